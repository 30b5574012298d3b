-- POST /contracts with a contract number unique per run, thread and request:
-- PREFIX-<thread>-<counter>. Pass a PREFIX that is new for every run against the
-- same data (run.sh uses one per phase).
-- Usage: wrk ... -s create.lua URL -- PREFIX [lax]
dofile("report.lua")

local prefix, counter = "X", 0
local template = '{"contractNumber":"%s-%d-%07d","lessor":"Volvofinans Bank AB",'
   .. '"description":"Volvo XC60","category":"vehicle","startDate":"2024-03-01",'
   .. '"endDate":"2027-02-28","payment":{"amount":689900,"currency":"SEK"},'
   .. '"paymentFrequency":"monthly","paymentTiming":"advance","interestRate":"4.95"}'
local headers = {}

function init(args)
   args = report_init(args)
   prefix = args[1] or error("create.lua: pass a contract number prefix after --")
   -- wrk.format uses the headers it is given instead of wrk.headers (the -H ones).
   for name, value in pairs(wrk.headers) do headers[name] = value end
   headers["Content-Type"] = "application/json"
end

function request()
   counter = counter + 1
   local body = string.format(template, prefix, tid or 1, counter)
   return wrk.format("POST", "/contracts", headers, body)
end
