"""`make bench`: xfer against rclone and a download-then-upload copier on a local cloud.

    run.py            command line and the session: cloud up/down, sources, scenarios, results
    runs.py           one measured run: wall time, CPU of the copier, Swift and the machine,
                      peak RSS, bytes read from the source region; targets emptied after it
    copiers.py        one function per copier (xfer through its REST API, rclone, staged)
    extra_runs.py     fan-out to two regions against two sequential copies; a rate-capped copy
    sources.py        the source objects (slo100, slo1024, plain), streamed to Swift once
    goals.py          issue 11's goals as ratios of the medians, and what limits each
    report.py         hashing floor, tables of runs and medians, JSON file
    chart.py          the picture (matplotlib, the `bench` extra)
    procstat.py       CPU seconds and peak RSS from /proc and wait4
    swift_http.py     a small synchronous Swift client: PUTs, target HEAD, cleanup
    swift_log.py      object reads from a Swift proxy's access log
    shaping_proxy.py  a TCP proxy adding delay and a per-connection rate cap

Benchmarks are not tests: nothing here runs under `make test`.
"""
