/* A blocking connect interrupted by a signal whose handler has no
 * SA_RESTART must fail with EINTR, as alarm-based connect timeouts expect.
 * Usage: eintr IPV4 PORT (a listener that never completes the handshake). */
#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static void on_alarm(int sig) { (void)sig; }

int main(int argc, char **argv) {
	if (argc != 3) {
		fprintf(stderr, "usage: eintr IPV4 PORT\n");
		return 2;
	}
	struct sigaction sa;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = on_alarm; /* no SA_RESTART */
	sigaction(SIGALRM, &sa, NULL);
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a;
	memset(&a, 0, sizeof a);
	a.sin_family = AF_INET;
	a.sin_port = htons(atoi(argv[2]));
	inet_pton(AF_INET, argv[1], &a.sin_addr);
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	alarm(1);
	int r = connect(fd, (struct sockaddr *)&a, sizeof a);
	int e = errno;
	clock_gettime(CLOCK_MONOTONIC, &t1);
	double s = (t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9;
	printf("connect: %s after about 1 s: %s\n", r == 0 ? "ok" : (e == EINTR ? "EINTR" : strerror(e)),
	       s > 0.8 && s < 3 ? "yes" : "no");
	return 0;
}
