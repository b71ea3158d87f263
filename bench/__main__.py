"""`make bench`: image CPU cost against naive Pillow and pyvips; end-to-end pipeline throughput and
latency on the embedded stack, ours against the same pipeline with pyvips image stages (plus
CPU-only baselines); on that same stack, the delivery download of a 5 MB-class final image and
the GDPR forget latency; on a stack of its own, upload's peak memory under a burst of 50 concurrent
5 MB uploads; on a stack of its own, 24 12 MP photos into one conversation and over 12 against
libvips, single-photo latency and CPU per stage per photo (bench.burst); then, on a stack
of its own, start-up, memory and status latency with a year of history (1,000,000 files) against
an empty database; what tracing costs a stage per record (bench.tracing); then `make run` itself over
5,000 distinct photos: the embedded broker's RSS per 1,000 photos, and its recycling under
FS_EMBEDDED_BROKER_MAX_MB (bench.broker_memory). Results in bench/out/*.json and *.png."""

from bench import broker_memory, burst, delivery_download, forget, history, images, pipeline, tracing, upload_burst

if __name__ == "__main__":
    images.main()
    tracing.main([])
    pipeline.main(
        [],
        extras={"delivery_download": delivery_download.measure, "forget": forget.measure},
        reports={"delivery_download": delivery_download.report, "forget": forget.report},
    )
    # Own stack: the burst leaves 50 photos for the stages behind upload, which must not slow the rounds above.
    upload_burst.main([])
    burst.main([])
    history.main([])
    broker_memory.main([])
