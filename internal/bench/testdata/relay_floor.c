/*
 * The relay floor of floor.go in C: one thread, epoll, read and write, no
 * Go runtime. It runs `BENCH rr-client-fd DURATION` on one end of a
 * socketpair and copies between the other end and a TCP connection to an
 * rr-server on the host's loopback at PORT.
 *
 *   cc -O2 -o /tmp/relay-floor internal/bench/testdata/relay_floor.c
 *   /tmp/relay-floor 15299 3s /path/to/bench
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv) {
	if (argc != 4) {
		fprintf(stderr, "usage: relay_floor PORT DURATION BENCH\n");
		return 2;
	}
	int pair[2];
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, pair) != 0) {
		perror("socketpair");
		return 1;
	}
	int host = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[1])),
				  .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	if (connect(host, (struct sockaddr *)&sin, sizeof sin) != 0) {
		perror("connect");
		return 1;
	}
	int one = 1;
	setsockopt(host, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	pid_t child = fork();
	if (child == 0) {
		close(pair[0]);
		close(host);
		dup2(pair[1], 3);
		execl(argv[3], argv[3], "rr-client-fd", argv[2], (char *)NULL);
		perror("exec");
		_exit(1);
	}
	close(pair[1]);
	int ep = epoll_create1(0);
	int fds[2] = {pair[0], host};
	for (int i = 0; i < 2; i++) {
		struct epoll_event e = {.events = EPOLLIN, .data.fd = fds[i]};
		epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &e);
	}
	static char buf[65536];
	for (;;) {
		struct epoll_event events[2];
		int n = epoll_wait(ep, events, 2, -1);
		for (int i = 0; i < n; i++) {
			int from = events[i].data.fd, to = from == host ? pair[0] : host;
			ssize_t r = read(from, buf, sizeof buf);
			if (r <= 0) {
				int status;
				waitpid(child, &status, 0);
				return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
			}
			if (write(to, buf, r) != r)
				return 1;
		}
	}
}
