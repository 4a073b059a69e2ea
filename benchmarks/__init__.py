"""`make bench`: xfer against rclone and a download-then-upload copier on a local cloud.

    run.py            command line, the session (cloud up/down), scenarios and runs
    copiers.py        one function per copier: start it, time it, measure its CPU and RSS
    procstat.py       CPU seconds and peak RSS from /proc and wait4
    swift_http.py     a small synchronous Swift client: sources, target HEAD, cleanup
    shaping_proxy.py  a TCP proxy adding delay and a per-connection rate cap
    report.py         hashing floor, table, target ratios, JSON file

Benchmarks are not tests: nothing here runs under `make test`.
"""
