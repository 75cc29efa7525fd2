variable "project" {
  description = "Google Cloud project id"
  type        = string
}

variable "region" {
  description = "region of Cloud Run, Dataflow, Artifact Registry and the bucket"
  type        = string
  default     = "europe-west1"
}

variable "zone" {
  description = "zone of the Bigtable cluster"
  type        = string
  default     = "europe-west1-b"
}

variable "bigtable_instance" {
  description = "Bigtable instance holding the store"
  type        = string
  default     = "predserve"
}

variable "bigtable_table" {
  description = "Bigtable table of the store: bigtable://PROJECT/INSTANCE/TABLE"
  type        = string
  default     = "predictions"
}

variable "bigtable_nodes" {
  description = "nodes of the Bigtable cluster (the main cost driver; one serves about 10,000 point reads/s)"
  type        = number
  default     = 1
}

variable "dataset" {
  description = "BigQuery dataset holding the model and its input (the export reads it, and writes a temporary table there)"
  type        = string
}

variable "model" {
  description = "model name the predictions are served under"
  type        = string
  default     = "churn"
}

variable "key" {
  description = "column holding the id clients look up"
  type        = string
  default     = "user_id"
}

variable "query" {
  description = "the export's query, e.g. SELECT ... FROM ML.PREDICT(MODEL churn, TABLE users)"
  type        = string
}

variable "image_tag" {
  description = "tag of the pushed predserve-serve and predserve-export-flex images"
  type        = string
  default     = "0.1.0"
}

variable "refresh_schedule" {
  description = "cron schedule of the export (Cloud Scheduler, in time_zone)"
  type        = string
  default     = "0 3 * * *"
}

variable "time_zone" {
  description = "time zone of refresh_schedule"
  type        = string
  default     = "Etc/UTC"
}

variable "api_min_instances" {
  description = "Cloud Run instances kept warm (0 lets the API scale to zero, with a cold start of about 1 s)"
  type        = number
  default     = 1
}

variable "api_max_instances" {
  description = "most Cloud Run instances"
  type        = number
  default     = 10
}
