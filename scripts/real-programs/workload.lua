-- A deterministic Lua workload: recursion, table.sort with a Lua comparator,
-- errors caught by pcall (the C side leaves frames by longjmp), string
-- library calls, coroutines.
local function fib(n) if n < 2 then return n end return fib(n - 1) + fib(n - 2) end
local t = {}
for i = 1, 2000 do t[i] = (i * 7919) % 1000 end
table.sort(t, function(a, b) return a > b end)
local errors = 0
for i = 1, 300 do
  local ok = pcall(error, "boom " .. i)
  if not ok then errors = errors + 1 end
end
local s = string.rep("abc", 200):gsub("b", "B")
print(fib(18), t[1], t[2000], errors, #s, string.format("%5.2f", math.pi))
local co = coroutine.wrap(function() for i = 1, 5 do coroutine.yield(i) end end)
local sum = 0
for _ = 1, 5 do sum = sum + co() end
print(sum, select("#", string.byte("hello", 1, -1)))
