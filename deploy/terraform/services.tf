locals {
  store_url     = "bigtable://${var.project}/${google_bigtable_instance.store.name}/${google_bigtable_table.predictions.name}"
  registry      = "${var.region}-docker.pkg.dev/${var.project}/${google_artifact_registry_repository.images.repository_id}"
  serve_image   = "${local.registry}/predserve-serve:${var.image_tag}"
  template_spec = "gs://${google_storage_bucket.dataflow.name}/templates/predserve-export.json"
  temp_location = "gs://${google_storage_bucket.dataflow.name}/tmp"
}

# ---- images and the Flex Template's bucket --------------------------------------------------
resource "google_artifact_registry_repository" "images" {
  location      = var.region
  repository_id = "predserve"
  format        = "DOCKER"
  description   = "predserve-serve and predserve-export-flex (make image; docs/deploy.md pushes them)"
}

resource "google_storage_bucket" "dataflow" {
  # the template spec (templates/), Dataflow's staging and temporary files (tmp/)
  name                        = "${var.project}-predserve-dataflow"
  location                    = var.region
  uniform_bucket_level_access = true
  public_access_prevention    = "enforced"

  lifecycle_rule {
    condition {
      age            = 7
      matches_prefix = ["tmp/"]
    }
    action {
      type = "Delete"
    }
  }
}

# ---- the API's service keys (predserve iam), from Secret Manager ------------------------------
resource "google_secret_manager_secret" "iam" {
  secret_id = "predserve-iam"
  replication {
    auto {}
  }
}

resource "google_secret_manager_secret_iam_member" "api_reads_its_keys" {
  secret_id = google_secret_manager_secret.iam.id
  role      = "roles/secretmanager.secretAccessor"
  member    = google_service_account.api.member
}

# ---- the API on Cloud Run (the same settings as deploy/cloudrun/service.yaml) ---------------
resource "google_cloud_run_v2_service" "api" {
  name     = "predserve-api"
  location = var.region
  ingress  = "INGRESS_TRAFFIC_ALL"

  template {
    service_account                  = google_service_account.api.email
    max_instance_request_concurrency = 250
    scaling {
      min_instance_count = var.api_min_instances
      max_instance_count = var.api_max_instances
    }

    containers {
      image = local.serve_image
      ports {
        container_port = 8080
      }
      env {
        name  = "PREDSERVE_STORE"
        value = local.store_url
      }
      env {
        name  = "PREDSERVE_WORKERS"
        value = "1"
      }
      env {
        name  = "PREDSERVE_IAM"
        value = "/secrets/iam/predserve-iam.json"
      }
      resources {
        limits = {
          cpu    = "1"
          memory = "512Mi"
        }
        cpu_idle = false
      }
      startup_probe {
        http_get {
          path = "/readyz"
        }
        period_seconds    = 1
        failure_threshold = 30
      }
      liveness_probe {
        http_get {
          path = "/healthz"
        }
        period_seconds = 10
      }
      volume_mounts {
        name       = "iam"
        mount_path = "/secrets/iam"
      }
    }

    volumes {
      name = "iam"
      secret {
        secret = google_secret_manager_secret.iam.secret_id
        items {
          version = "latest"
          path    = "predserve-iam.json"
        }
      }
    }
  }
}

# ---- the daily refresh: Cloud Scheduler launches the Flex Template -----------------------------
resource "google_cloud_scheduler_job" "refresh" {
  name      = "predserve-refresh-${var.model}"
  region    = var.region
  schedule  = var.refresh_schedule
  time_zone = var.time_zone

  http_target {
    http_method = "POST"
    uri         = "https://dataflow.googleapis.com/v1b3/projects/${var.project}/locations/${var.region}/flexTemplates:launch"
    headers = {
      "Content-Type" = "application/json"
    }
    body = base64encode(jsonencode({
      launchParameter = {
        jobName              = "predserve-export-${var.model}"
        containerSpecGcsPath = local.template_spec
        parameters = {
          warehouse = "bigquery://${var.project}/${var.dataset}"
          model     = var.model
          key       = var.key
          query     = var.query
          store     = local.store_url
        }
        environment = {
          serviceAccountEmail = google_service_account.pipeline.email
          tempLocation        = local.temp_location
        }
      }
    }))
    oauth_token {
      service_account_email = google_service_account.scheduler.email
    }
  }
}
