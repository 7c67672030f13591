"""instructlake's Spark jobs: ingest (bronze), pairs (silver), export (gold), and the runner."""
