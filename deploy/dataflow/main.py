"""The Flex Template's program ($FLEX_TEMPLATE_PYTHON_PY_FILE in deploy/export.Containerfile).

Google's launcher runs ``python main.py --PARAMETER=VALUE ... PIPELINE_OPTIONS``; this turns the
template's parameters (deploy/dataflow/metadata.json) into ``predserve export`` options and runs it.
"""

from predserve.flex_template import launch

if __name__ == "__main__":
    launch()
