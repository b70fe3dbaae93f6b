-- GET the URL given on the command line, with the key header from common.lua.
wrk.method = "GET"
