-- wrk script for bench/run.mjs: POST a 64 KiB body to /echo on every request, then print
-- the same machine-readable summary line as wrk-summary.lua (loaded from next to this file).
wrk.method = "POST"
wrk.path = "/echo"
wrk.body = string.rep("x", 64 * 1024)
wrk.headers["Content-Type"] = "application/octet-stream"
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
dofile(here .. "wrk-summary.lua")
