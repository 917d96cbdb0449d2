package restart

import (
	"net"
	"os"
	"strconv"
)

// notify sends state to systemd's notification socket ($NOTIFY_SOCKET, see
// sd_notify(3)) if the process runs under Type=notify; otherwise it does
// nothing. With restarts the main process changes, and MAINPID= is how
// systemd learns of the new one (the unit needs NotifyAccess=all).
func notify(state string) error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	if path[0] == '@' { // an abstract socket
		path = "\x00" + path[1:]
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return err
	}
	defer c.Close()
	_, err = c.Write([]byte(state))
	return err
}

// readyState is what a serving process tells systemd.
func readyState() string { return "READY=1\nMAINPID=" + strconv.Itoa(os.Getpid()) }
