package drill

import (
	"golang.org/x/sys/unix"
)

// symbols are the names a script may use for numbers: those of the system
// call interface, with Linux's values.
var symbols = map[string]int64{
	// Address and protocol families, socket types.
	"AF_UNSPEC": unix.AF_UNSPEC, "AF_INET": unix.AF_INET, "AF_INET6": unix.AF_INET6, "AF_UNIX": unix.AF_UNIX,
	"PF_INET": unix.AF_INET, "PF_INET6": unix.AF_INET6,
	"SOCK_STREAM": unix.SOCK_STREAM, "SOCK_DGRAM": unix.SOCK_DGRAM, "SOCK_RAW": unix.SOCK_RAW,
	"SOCK_SEQPACKET": unix.SOCK_SEQPACKET, "SOCK_NONBLOCK": unix.SOCK_NONBLOCK, "SOCK_CLOEXEC": unix.SOCK_CLOEXEC,
	"IPPROTO_IP": unix.IPPROTO_IP, "IPPROTO_IPV6": unix.IPPROTO_IPV6, "IPPROTO_TCP": unix.IPPROTO_TCP,
	"IPPROTO_UDP": unix.IPPROTO_UDP, "IPPROTO_ICMP": unix.IPPROTO_ICMP, "IPPROTO_ICMPV6": unix.IPPROTO_ICMPV6,
	"IPPROTO_RAW": unix.IPPROTO_RAW,

	// Option levels.
	"SOL_SOCKET": unix.SOL_SOCKET, "SOL_TCP": unix.SOL_TCP, "SOL_IP": unix.SOL_IP, "SOL_IPV6": unix.SOL_IPV6,
	"SOL_UDP": unix.SOL_UDP,

	// SOL_SOCKET options.
	"SO_DEBUG": unix.SO_DEBUG, "SO_REUSEADDR": unix.SO_REUSEADDR, "SO_REUSEPORT": unix.SO_REUSEPORT,
	"SO_TYPE": unix.SO_TYPE, "SO_ERROR": unix.SO_ERROR, "SO_DONTROUTE": unix.SO_DONTROUTE,
	"SO_BROADCAST": unix.SO_BROADCAST, "SO_SNDBUF": unix.SO_SNDBUF, "SO_RCVBUF": unix.SO_RCVBUF,
	"SO_SNDBUFFORCE": unix.SO_SNDBUFFORCE, "SO_RCVBUFFORCE": unix.SO_RCVBUFFORCE,
	"SO_KEEPALIVE": unix.SO_KEEPALIVE, "SO_OOBINLINE": unix.SO_OOBINLINE, "SO_LINGER": unix.SO_LINGER,
	"SO_PRIORITY": unix.SO_PRIORITY, "SO_RCVLOWAT": unix.SO_RCVLOWAT, "SO_SNDLOWAT": unix.SO_SNDLOWAT,
	"SO_RCVTIMEO": unix.SO_RCVTIMEO, "SO_SNDTIMEO": unix.SO_SNDTIMEO, "SO_ACCEPTCONN": unix.SO_ACCEPTCONN,
	"SO_PROTOCOL": unix.SO_PROTOCOL, "SO_DOMAIN": unix.SO_DOMAIN, "SO_MARK": unix.SO_MARK,
	"SO_TIMESTAMP": unix.SO_TIMESTAMP, "SO_TIMESTAMPNS": unix.SO_TIMESTAMPNS,
	"SO_TIMESTAMPING": unix.SO_TIMESTAMPING, "SO_ZEROCOPY": unix.SO_ZEROCOPY,
	"SO_MAX_PACING_RATE": unix.SO_MAX_PACING_RATE, "SO_BINDTODEVICE": unix.SO_BINDTODEVICE,

	// SOL_TCP options.
	"TCP_NODELAY": unix.TCP_NODELAY, "TCP_MAXSEG": unix.TCP_MAXSEG, "TCP_CORK": unix.TCP_CORK,
	"TCP_KEEPIDLE": unix.TCP_KEEPIDLE, "TCP_KEEPINTVL": unix.TCP_KEEPINTVL, "TCP_KEEPCNT": unix.TCP_KEEPCNT,
	"TCP_SYNCNT": unix.TCP_SYNCNT, "TCP_LINGER2": unix.TCP_LINGER2, "TCP_DEFER_ACCEPT": unix.TCP_DEFER_ACCEPT,
	"TCP_WINDOW_CLAMP": unix.TCP_WINDOW_CLAMP, "TCP_INFO": unix.TCP_INFO, "TCP_QUICKACK": unix.TCP_QUICKACK,
	"TCP_CONGESTION": unix.TCP_CONGESTION, "TCP_MD5SIG": unix.TCP_MD5SIG, "TCP_THIN_LINEAR_TIMEOUTS": unix.TCP_THIN_LINEAR_TIMEOUTS,
	"TCP_THIN_DUPACK": unix.TCP_THIN_DUPACK, "TCP_USER_TIMEOUT": unix.TCP_USER_TIMEOUT, "TCP_REPAIR": unix.TCP_REPAIR,
	"TCP_FASTOPEN": unix.TCP_FASTOPEN, "TCP_TIMESTAMP": unix.TCP_TIMESTAMP, "TCP_NOTSENT_LOWAT": unix.TCP_NOTSENT_LOWAT,
	"TCP_FASTOPEN_CONNECT": unix.TCP_FASTOPEN_CONNECT, "TCP_ULP": unix.TCP_ULP, "TCP_INQ": unix.TCP_INQ,
	"TCP_TX_DELAY": unix.TCP_TX_DELAY,

	// SOL_IP and SOL_IPV6 options.
	"IP_TOS": unix.IP_TOS, "IP_TTL": unix.IP_TTL, "IP_HDRINCL": unix.IP_HDRINCL, "IP_OPTIONS": unix.IP_OPTIONS,
	"IP_RECVERR": unix.IP_RECVERR, "IP_MTU_DISCOVER": unix.IP_MTU_DISCOVER, "IP_MTU": unix.IP_MTU,
	"IP_PKTINFO": unix.IP_PKTINFO, "IP_RECVTOS": unix.IP_RECVTOS, "IP_RECVTTL": unix.IP_RECVTTL,
	"IP_FREEBIND": unix.IP_FREEBIND, "IP_TRANSPARENT": unix.IP_TRANSPARENT,
	"IP_PMTUDISC_DONT": unix.IP_PMTUDISC_DONT, "IP_PMTUDISC_WANT": unix.IP_PMTUDISC_WANT,
	"IP_PMTUDISC_DO": unix.IP_PMTUDISC_DO, "IP_PMTUDISC_PROBE": unix.IP_PMTUDISC_PROBE,
	"IPV6_V6ONLY": unix.IPV6_V6ONLY, "IPV6_TCLASS": unix.IPV6_TCLASS, "IPV6_UNICAST_HOPS": unix.IPV6_UNICAST_HOPS,
	"IPV6_RECVERR": unix.IPV6_RECVERR, "IPV6_MTU_DISCOVER": unix.IPV6_MTU_DISCOVER, "IPV6_MTU": unix.IPV6_MTU,
	"IPV6_RECVPKTINFO": unix.IPV6_RECVPKTINFO,

	// fcntl.
	"F_DUPFD": unix.F_DUPFD, "F_GETFD": unix.F_GETFD, "F_SETFD": unix.F_SETFD, "F_GETFL": unix.F_GETFL,
	"F_SETFL": unix.F_SETFL, "FD_CLOEXEC": unix.FD_CLOEXEC,
	"O_RDONLY": unix.O_RDONLY, "O_WRONLY": unix.O_WRONLY, "O_RDWR": unix.O_RDWR, "O_NONBLOCK": unix.O_NONBLOCK,
	"O_NDELAY": unix.O_NDELAY, "O_APPEND": unix.O_APPEND, "O_CLOEXEC": unix.O_CLOEXEC,

	// ioctl.
	"FIONREAD": unix.SIOCINQ, "SIOCINQ": unix.SIOCINQ, "SIOCOUTQ": unix.SIOCOUTQ, "FIONBIO": 0x5421,
	"SIOCOUTQNSD": unix.SIOCOUTQNSD, "SIOCATMARK": unix.SIOCATMARK,

	// Message flags.
	"MSG_OOB": unix.MSG_OOB, "MSG_PEEK": unix.MSG_PEEK, "MSG_DONTROUTE": unix.MSG_DONTROUTE,
	"MSG_CTRUNC": unix.MSG_CTRUNC, "MSG_TRUNC": unix.MSG_TRUNC, "MSG_DONTWAIT": unix.MSG_DONTWAIT,
	"MSG_EOR": unix.MSG_EOR, "MSG_WAITALL": unix.MSG_WAITALL, "MSG_NOSIGNAL": unix.MSG_NOSIGNAL,
	"MSG_MORE": unix.MSG_MORE, "MSG_ERRQUEUE": unix.MSG_ERRQUEUE, "MSG_FASTOPEN": unix.MSG_FASTOPEN,
	"MSG_ZEROCOPY": unix.MSG_ZEROCOPY, "MSG_CMSG_CLOEXEC": unix.MSG_CMSG_CLOEXEC,

	// shutdown.
	"SHUT_RD": unix.SHUT_RD, "SHUT_WR": unix.SHUT_WR, "SHUT_RDWR": unix.SHUT_RDWR,

	// poll.
	"POLLIN": unix.POLLIN, "POLLPRI": unix.POLLPRI, "POLLOUT": unix.POLLOUT, "POLLRDNORM": 0x40,
	"POLLRDBAND": 0x80, "POLLWRNORM": 0x100, "POLLWRBAND": 0x200, "POLLMSG": 0x400, "POLLREMOVE": 0x1000,
	"POLLRDHUP": unix.POLLRDHUP,
	"POLLERR":   unix.POLLERR, "POLLHUP": unix.POLLHUP, "POLLNVAL": unix.POLLNVAL,

	// TCP states and congestion-avoidance states, for tcp_info.
	"TCP_ESTABLISHED": 1, "TCP_SYN_SENT": 2, "TCP_SYN_RECV": 3, "TCP_FIN_WAIT1": 4, "TCP_FIN_WAIT2": 5,
	"TCP_TIME_WAIT": 6, "TCP_CLOSE": 7, "TCP_CLOSE_WAIT": 8, "TCP_LAST_ACK": 9, "TCP_LISTEN": 10,
	"TCP_CLOSING": 11, "TCP_NEW_SYN_RECV": 12,
	"TCP_CA_Open": 0, "TCP_CA_Disorder": 1, "TCP_CA_CWR": 2, "TCP_CA_Recovery": 3, "TCP_CA_Loss": 4,
	"TCPI_OPT_TIMESTAMPS": 1, "TCPI_OPT_SACK": 2, "TCPI_OPT_WSCALE": 4, "TCPI_OPT_ECN": 8,
	"TCPI_OPT_ECN_SEEN": 16, "TCPI_OPT_SYN_DATA": 32,

	"NULL": 0,
}

// errnoNames maps errno names to numbers; errnoName the other way.
var errnoNames = map[string]unix.Errno{}

func init() {
	for e := unix.Errno(1); e < 134; e++ {
		if n := unix.ErrnoName(e); n != "" {
			errnoNames[n] = e
		}
	}
	errnoNames["EWOULDBLOCK"] = unix.EAGAIN
}

func errnoName(e unix.Errno) string {
	if n := unix.ErrnoName(e); n != "" {
		return n
	}
	return "errno " + itoa(int64(e))
}

func itoa(v int64) string {
	if v == 0 {
		return "0"
	}
	neg := v < 0
	if neg {
		v = -v
	}
	var b [24]byte
	i := len(b)
	for v > 0 {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
	}
	if neg {
		i--
		b[i] = '-'
	}
	return string(b[i:])
}

// tcpInfoFields locates the fields of struct tcp_info (linux/tcp.h): offset,
// size in bytes, and for the two window-scale nibbles the shift.
var tcpInfoFields = map[string]struct{ off, size, shift int }{
	"tcpi_state": {0, 1, 0}, "tcpi_ca_state": {1, 1, 0}, "tcpi_retransmits": {2, 1, 0}, "tcpi_probes": {3, 1, 0},
	"tcpi_backoff": {4, 1, 0}, "tcpi_options": {5, 1, 0}, "tcpi_snd_wscale": {6, -1, 0}, "tcpi_rcv_wscale": {6, -1, 4},
	"tcpi_rto": {8, 4, 0}, "tcpi_ato": {12, 4, 0}, "tcpi_snd_mss": {16, 4, 0}, "tcpi_rcv_mss": {20, 4, 0},
	"tcpi_unacked": {24, 4, 0}, "tcpi_sacked": {28, 4, 0}, "tcpi_lost": {32, 4, 0}, "tcpi_retrans": {36, 4, 0},
	"tcpi_fackets": {40, 4, 0}, "tcpi_last_data_sent": {44, 4, 0}, "tcpi_last_ack_sent": {48, 4, 0},
	"tcpi_last_data_recv": {52, 4, 0}, "tcpi_last_ack_recv": {56, 4, 0}, "tcpi_pmtu": {60, 4, 0},
	"tcpi_rcv_ssthresh": {64, 4, 0}, "tcpi_rtt": {68, 4, 0}, "tcpi_rttvar": {72, 4, 0},
	"tcpi_snd_ssthresh": {76, 4, 0}, "tcpi_snd_cwnd": {80, 4, 0}, "tcpi_advmss": {84, 4, 0},
	"tcpi_reordering": {88, 4, 0}, "tcpi_rcv_rtt": {92, 4, 0}, "tcpi_rcv_space": {96, 4, 0},
	"tcpi_total_retrans": {100, 4, 0}, "tcpi_pacing_rate": {104, 8, 0}, "tcpi_max_pacing_rate": {112, 8, 0},
	"tcpi_bytes_acked": {120, 8, 0}, "tcpi_bytes_received": {128, 8, 0}, "tcpi_segs_out": {136, 4, 0},
	"tcpi_segs_in": {140, 4, 0}, "tcpi_notsent_bytes": {144, 4, 0}, "tcpi_min_rtt": {148, 4, 0},
	"tcpi_data_segs_in": {152, 4, 0}, "tcpi_data_segs_out": {156, 4, 0}, "tcpi_delivery_rate": {160, 8, 0},
	"tcpi_busy_time": {168, 8, 0}, "tcpi_rwnd_limited": {176, 8, 0}, "tcpi_sndbuf_limited": {184, 8, 0},
	"tcpi_delivered": {192, 4, 0}, "tcpi_delivered_ce": {196, 4, 0}, "tcpi_bytes_sent": {200, 8, 0},
	"tcpi_bytes_retrans": {208, 8, 0}, "tcpi_dsack_dups": {216, 4, 0}, "tcpi_reord_seen": {220, 4, 0},
	"tcpi_rcv_ooopack": {224, 4, 0}, "tcpi_snd_wnd": {228, 4, 0}, "tcpi_rcv_wnd": {232, 4, 0},
}
