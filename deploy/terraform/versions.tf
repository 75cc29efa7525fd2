# predserve on Google Cloud: the two service accounts with the seed's role split, the Bigtable
# store, the images' repository, the API on Cloud Run, the Flex Template's bucket and a daily
# refresh by Cloud Scheduler. docs/deploy.md walks through `terraform apply`.
terraform {
  required_version = ">= 1.5"
  required_providers {
    google = {
      source  = "hashicorp/google"
      version = ">= 5.0"
    }
  }
}

provider "google" {
  project = var.project
  region  = var.region
}
