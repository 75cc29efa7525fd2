# The store: one table, the column families predserve.store.bigtable uses (data "p", state and
# tallies "m"), each keeping one version of a cell.
resource "google_bigtable_instance" "store" {
  name                = var.bigtable_instance
  deletion_protection = true

  cluster {
    cluster_id   = "${var.bigtable_instance}-c1"
    zone         = var.zone
    num_nodes    = var.bigtable_nodes
    storage_type = "SSD"
  }
}

resource "google_bigtable_table" "predictions" {
  name          = var.bigtable_table
  instance_name = google_bigtable_instance.store.name

  column_family {
    family = "p"
  }
  column_family {
    family = "m"
  }
}

resource "google_bigtable_gc_policy" "predictions" {
  instance_name = google_bigtable_instance.store.name
  table         = google_bigtable_table.predictions.name
  column_family = "p"

  max_version {
    number = 1
  }
}

resource "google_bigtable_gc_policy" "state" {
  instance_name = google_bigtable_instance.store.name
  table         = google_bigtable_table.predictions.name
  column_family = "m"

  max_version {
    number = 1
  }
}
