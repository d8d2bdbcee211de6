"""The pipeline's steps: jobs (status), extract (COPY -> Arrow), validate (GX), store (blocks)."""
