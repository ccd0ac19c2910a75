# A real runtime at its ready point with its two eventfds (ruby 3.1: thread and signal wakeups).
# After restore it does work that goes through them: a signal handler, a thread, a queue.
require "json"
data = (1..2000).map { |i| { "n" => i, "sq" => i * i } }
got = []
Signal.trap("USR1") { got << :usr1 }
puts "ready pid=#{Process.pid}"
$stdout.flush
line = $stdin.gets.to_s.strip
Process.kill("USR1", Process.pid)
q = Queue.new
t = Thread.new { q << JSON.parse(JSON.generate(data)).sum { |h| h["sq"] } }
t.join
sleep 0.05 until got.include?(:usr1)
puts "input=#{line} sum=#{q.pop} signal=#{got.first}"
