import java.net.InterfaceAddress;
import java.net.NetworkInterface;
import java.util.ArrayList;
import java.util.Collections;
import java.util.List;

// Prints what java.net.NetworkInterface says of the machine's interfaces,
// one line each: index, name, MTU, up, loopback, MAC and addresses.
public class Ifaces {
    public static void main(String[] args) throws Exception {
        List<NetworkInterface> ifs = Collections.list(NetworkInterface.getNetworkInterfaces());
        ifs.sort((a, b) -> a.getIndex() - b.getIndex());
        for (NetworkInterface n : ifs) {
            List<String> addrs = new ArrayList<>();
            for (InterfaceAddress a : n.getInterfaceAddresses()) {
                addrs.add(a.getAddress().getHostAddress().replaceAll("%.*", "") + "/" + a.getNetworkPrefixLength());
            }
            Collections.sort(addrs);
            StringBuilder mac = new StringBuilder();
            byte[] hw = n.getHardwareAddress();
            if (hw != null) {
                for (int i = 0; i < hw.length; i++) {
                    mac.append(String.format(i == 0 ? "%02x" : ":%02x", hw[i]));
                }
            }
            System.out.println(n.getIndex() + " " + n.getName() + " mtu=" + n.getMTU() + " up=" + n.isUp()
                + " loopback=" + n.isLoopback() + " mac=" + mac + " addrs=" + String.join(",", addrs));
        }
    }
}
