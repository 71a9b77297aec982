"""outdial engine: policy and orchestration."""
