-- GET the URL as given (run.sh passes /contracts?limit=50: the first page, as a list
-- view opens). Usage: wrk ... -s list.lua URL [-- lax]
dofile("report.lua")

function init(args)
   report_init(args)
end
