-- GET the URL given on wrk's command line (with the bearer key when AUTH is set).
dofile(os.getenv("BENCH_DIR") .. "/report.lua")
