"""What the EHR sends and what the service reads from its FHIR server: the hook context's
draft orders, genomic results and other resources from prefetch or FHIR reads, and outbound
HTTP that stays within its budget and away from forbidden addresses."""
