"""Examples of sdm_async in use; each module says how to run it."""
