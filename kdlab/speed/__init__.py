"""Speed: what makes the loop fast without changing what it computes (memory reuse, length buckets, the
teacher-output cache, data parallelism). A first reading of kdlab can skip this package."""
