output "store_url" {
  description = "the --store / PREDSERVE_STORE both the export and the API use"
  value       = local.store_url
}

output "api_url" {
  value = google_cloud_run_v2_service.api.uri
}

output "registry" {
  description = "where docs/deploy.md pushes the images"
  value       = local.registry
}

output "template_spec" {
  description = "where `gcloud dataflow flex-template build` writes the template spec"
  value       = local.template_spec
}

output "pipeline_service_account" {
  value = google_service_account.pipeline.email
}

output "api_service_account" {
  value = google_service_account.api.email
}

output "updates_subscription" {
  description = "`predserve stream --subscription`: the streamed updates"
  value       = google_pubsub_subscription.updates.id
}

output "updates_dead_letter_topic" {
  description = "`predserve stream --dead-letter-topic`: where bad messages go"
  value       = google_pubsub_topic.updates_dead_letter.id
}
