// Package udpgso sends UDP with generic segmentation offload (UDP_SEGMENT,
// Linux 4.18 and later): a run of equal-size packets to one address, the
// last possibly shorter, goes down the stack in one sendmsg and the kernel
// cuts it. Send does that for a run the caller already holds (the proxy's
// forwarded-mode relay). Conn does it for quic-go, whose sender writes one
// packet per call wherever the packets are not all of the maximum size, as
// HTTP Datagrams carrying a tunnelled connection's packets never are: it
// gathers the writes of a burst and sends them in runs. Off Linux, or where
// the kernel lacks UDP_SEGMENT, both send one packet per call.
package udpgso
