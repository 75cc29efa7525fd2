# The seed's split: the pipeline writes the store, the API only reads it. No project-wide editor
# or owner anywhere; every binding is on the one resource it is for where Google allows it.
resource "google_service_account" "pipeline" {
  account_id   = "predserve-pipeline"
  display_name = "predserve export (Dataflow workers and the Flex Template launcher)"
}

resource "google_service_account" "api" {
  account_id   = "predserve-api"
  display_name = "predserve prediction API (Cloud Run)"
}

resource "google_service_account" "scheduler" {
  account_id   = "predserve-scheduler"
  display_name = "predserve daily refresh (Cloud Scheduler launching the Flex Template)"
}

# ---- the pipeline's account --------------------------------------------------------------
resource "google_project_iam_member" "pipeline_dataflow_worker" {
  project = var.project
  role    = "roles/dataflow.worker"
  member  = google_service_account.pipeline.member
}

resource "google_bigtable_instance_iam_member" "pipeline_bigtable_user" {
  instance = google_bigtable_instance.store.name
  role     = "roles/bigtable.user"
  member   = google_service_account.pipeline.member
}

resource "google_bigquery_dataset_iam_member" "pipeline_dataset" {
  # the export reads the dataset and materialises its query into a temporary table there
  dataset_id = var.dataset
  role       = "roles/bigquery.dataEditor"
  member     = google_service_account.pipeline.member
}

resource "google_project_iam_member" "pipeline_bigquery_jobs" {
  # running the export's query is a BigQuery job, which only a project-level role allows
  project = var.project
  role    = "roles/bigquery.jobUser"
  member  = google_service_account.pipeline.member
}

resource "google_project_iam_member" "pipeline_read_sessions" {
  project = var.project
  role    = "roles/bigquery.readSessionUser"
  member  = google_service_account.pipeline.member
}

resource "google_storage_bucket_iam_member" "pipeline_temp_bucket" {
  bucket = google_storage_bucket.dataflow.name
  role   = "roles/storage.objectAdmin"
  member = google_service_account.pipeline.member
}

resource "google_artifact_registry_repository_iam_member" "pipeline_pulls_the_template_image" {
  # the Flex Template launcher VM runs as this account and pulls the export image
  location   = google_artifact_registry_repository.images.location
  repository = google_artifact_registry_repository.images.name
  role       = "roles/artifactregistry.reader"
  member     = google_service_account.pipeline.member
}

# ---- the API's account: read the store, nothing else ---------------------------------------
resource "google_bigtable_instance_iam_member" "api_bigtable_reader" {
  instance = google_bigtable_instance.store.name
  role     = "roles/bigtable.reader"
  member   = google_service_account.api.member
}

# ---- the scheduler's account: launch the template as the pipeline's account ---------------
resource "google_project_iam_member" "scheduler_launches_dataflow" {
  project = var.project
  role    = "roles/dataflow.developer"
  member  = google_service_account.scheduler.member
}

resource "google_service_account_iam_member" "scheduler_acts_as_pipeline" {
  service_account_id = google_service_account.pipeline.name
  role               = "roles/iam.serviceAccountUser"
  member             = google_service_account.scheduler.member
}

resource "google_storage_bucket_iam_member" "scheduler_reads_the_template" {
  bucket = google_storage_bucket.dataflow.name
  role   = "roles/storage.objectViewer"
  member = google_service_account.scheduler.member
}
