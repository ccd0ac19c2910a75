// A JVM app for runtimes_test (run with -XX:-UsePerfData: see the README on hsperfdata).
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.security.MessageDigest;
import java.util.HashMap;
import java.util.concurrent.Executors;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Future;

// Start-up work a JVM service does (classes loaded, JIT warm, a pool of threads), then one answer.
public class RuntimeApp {
  public static void main(String[] args) throws Exception {
    MessageDigest md = MessageDigest.getInstance("SHA-1");
    HashMap<Integer, String> table = new HashMap<>();
    for (int i = 0; i < 100000; i++) {
      byte[] d = md.digest(Integer.toString(i).getBytes("UTF-8"));
      table.put(i, String.format("%02x%02x", d[0], d[1]));
    }
    ExecutorService pool = Executors.newFixedThreadPool(4);
    for (int i = 0; i < 4; i++) pool.submit(() -> 0).get();
    System.out.println("ready pid=" + ProcessHandle.current().pid());
    System.out.flush();
    BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
    int n = Integer.parseInt(in.readLine().trim());
    Future<String> f = pool.submit(() -> table.get(n));
    System.out.println("answer=" + f.get() + " threads=" + (Thread.activeCount() >= 5));
    pool.shutdown();
  }
}
