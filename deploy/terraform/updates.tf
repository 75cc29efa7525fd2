# Updates between exports (`predserve stream`): a topic producers publish updates to, the
# subscription the streaming job reads, and the dead-letter topic it sends bad messages to.
# The job runs as the pipeline's account (it writes the store); the API never sees Pub/Sub.
resource "google_pubsub_topic" "updates" {
  name = "predserve-${var.model}-updates"
}

resource "google_pubsub_subscription" "updates" {
  name  = "predserve-${var.model}-updates"
  topic = google_pubsub_topic.updates.id
  # the stream acknowledges a batch once it is applied; a batch unacknowledged after this comes again
  ack_deadline_seconds       = 60
  message_retention_duration = "604800s" # 7 days, the store's update-log retention
}

resource "google_pubsub_topic" "updates_dead_letter" {
  name = "predserve-${var.model}-updates-dead"
}

resource "google_pubsub_subscription" "updates_dead_letter" {
  # somewhere for the bad messages to wait until someone reads them (predserve_error says why)
  name                       = "predserve-${var.model}-updates-dead"
  topic                      = google_pubsub_topic.updates_dead_letter.id
  message_retention_duration = "604800s"
}

resource "google_pubsub_subscription_iam_member" "pipeline_reads_the_updates" {
  subscription = google_pubsub_subscription.updates.name
  role         = "roles/pubsub.subscriber"
  member       = google_service_account.pipeline.member
}

resource "google_pubsub_subscription_iam_member" "pipeline_watches_the_updates" {
  # Dataflow's ReadFromPubSub reads the subscription's metadata (its backlog and watermark)
  subscription = google_pubsub_subscription.updates.name
  role         = "roles/pubsub.viewer"
  member       = google_service_account.pipeline.member
}

resource "google_pubsub_topic_iam_member" "pipeline_dead_letters" {
  topic  = google_pubsub_topic.updates_dead_letter.name
  role   = "roles/pubsub.publisher"
  member = google_service_account.pipeline.member
}
