// Package udpgro reads UDP generic receive offload (UDP_GRO, Linux 5.0 and
// later): the kernel hands a run of equal-size packets from one sender over
// in one buffer, with the size of each in a control message, so that a
// reader takes a QUIC peer's GSO burst in one recvmsg. The proxy's target
// sockets (tunnel) and the client's forwarding socket (client/h3) both read
// so; this package holds what they share, and the source-address parsing of
// the raw reads that the client's forwarding socket and the proxy's
// forwarding listener make. It has nothing off Linux.
package udpgro
