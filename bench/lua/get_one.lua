-- GET /contracts/{id}, rotating over the ids in the file given as first argument
-- (one id a line). Each thread starts at a different place in the list.
-- Usage: wrk ... -s get_one.lua URL -- ids.txt [lax]
dofile("report.lua")

local reqs, n, i = {}, 0, -1

function init(args)
   args = report_init(args)
   local path = args[1] or error("get_one.lua: pass the ids file after --")
   for line in io.lines(path) do
      if #line > 0 then
         n = n + 1
         reqs[n] = wrk.format("GET", "/contracts/" .. line)
      end
   end
   if n == 0 then error("get_one.lua: no ids in " .. path) end
end

function request()
   if i < 0 then i = ((tid or 1) * 7919) % n end -- tid is set by setup()
   i = i + 1
   if i > n then i = 1 end
   return reqs[i]
end
