"""`make bench`: image CPU cost against naive Pillow and pyvips, then end-to-end pipeline throughput
and latency on the embedded stack. Results in bench/out/*.json and *.png."""
from bench import images, pipeline

if __name__ == "__main__":
    images.main()
    pipeline.main([])
