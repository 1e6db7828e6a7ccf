/*
 * Short request/response connections for the forward benchmark: what a proxy in front of
 * a small service sees. A Node generator would spend the two cores it shares with the
 * proxy; this one spends its time in the kernel.
 *
 *   rrgen server <host> <port,port,...> <large bytes>
 *       On each port: accepts, reads the whole request, writes the response and closes.
 *       A request starting with 'L' is <large bytes> long and answered with as many;
 *       any other is one byte, answered with one. Prints {"ready":true} once every port
 *       listens; runs until SIGTERM.
 *   rrgen client <host> <port> <ms> <in flight> <bytes>
 *       Keeps <in flight> connections going for <ms>: connect, write the request, read
 *       the response to the server's FIN, close, start the next. The request and the
 *       response are both <bytes> long: 1, or the server's <large bytes>. Prints one JSON line:
 *       completed, failed (reset, refused, short answer), and the p50/p99 of the time
 *       from connect() to the FIN, in microseconds.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_SLOTS 4096
#define MAX_SAMPLES (1 << 22)

struct conn {
	int fd;
	size_t done; /* bytes of the request read (server) or of the response read (client) */
	double started;
};

static char buf[65536];
static char payload[65536];
static struct conn conns[MAX_SLOTS];

static double now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

static struct sockaddr_in addr_of(const char *host, int port)
{
	struct sockaddr_in sa = { .sin_family = AF_INET, .sin_port = htons(port) };
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) {
		fprintf(stderr, "bad address %s\n", host);
		exit(2);
	}
	return sa;
}

static int serve(const char *host, char *ports, size_t large)
{
	int ep = epoll_create1(0);
	int n = 0;
	for (char *p = strtok(ports, ","); p && n < 16; p = strtok(NULL, ",")) {
		struct sockaddr_in sa = addr_of(host, atoi(p));
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0), one = 1;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
		if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 4096) < 0) {
			perror("listen");
			return 1;
		}
		struct epoll_event ev = { .events = EPOLLIN, .data.u64 = (uint64_t)fd << 1 | 1 };
		epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
		n++;
	}
	printf("{\"ready\":true}\n");
	fflush(stdout);
	struct epoll_event evs[256];
	static size_t got[1 << 20], need[1 << 20];
	for (;;) {
		int k = epoll_wait(ep, evs, 256, -1);
		for (int i = 0; i < k; i++) {
			int fd = (int)(evs[i].data.u64 >> 1);
			if (evs[i].data.u64 & 1) {
				int c;
				while ((c = accept4(fd, NULL, NULL, SOCK_NONBLOCK)) >= 0) {
					if (c >= (1 << 20)) {
						close(c);
						continue;
					}
					got[c] = 0;
					need[c] = 1;
					struct epoll_event ev = { .events = EPOLLIN, .data.u64 = (uint64_t)c << 1 };
					epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
				}
				continue;
			}
			ssize_t r = read(fd, buf, sizeof buf);
			if (r > 0 && got[fd] == 0 && buf[0] == 'L') need[fd] = large;
			if (r > 0) got[fd] += r;
			if (r > 0 && got[fd] < need[fd]) continue;
			if (r < 0 && errno == EAGAIN) continue;
			if (r > 0) {
				/* The response fits the socket buffer of a fresh connection. */
				if (write(fd, payload, need[fd]) < 0) {
					/* the peer went away: close below */
				}
			}
			close(fd);
		}
	}
}

static int cmp(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;
	return x < y ? -1 : x > y;
}

static int client(const char *host, int port, int ms, int inflight, size_t req, size_t resp)
{
	struct sockaddr_in sa = addr_of(host, port);
	int ep = epoll_create1(0);
	static float samples[MAX_SAMPLES];
	long completed = 0, failed = 0, nsamples = 0;
	if (inflight > MAX_SLOTS) inflight = MAX_SLOTS;
	double until = now_us() + ms * 1e3;
	int open = 0;
	/* Opens the next connection in a slot; the slot index travels in the epoll data. */
	#define START(slot) do { \
		struct conn *c = &conns[slot]; \
		c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0); \
		int one = 1; setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); \
		c->done = 0; c->started = now_us(); \
		if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) < 0 && errno != EINPROGRESS) { failed++; close(c->fd); c->fd = -1; break; } \
		struct epoll_event ev = { .events = EPOLLOUT, .data.u32 = slot }; \
		epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev); open++; \
	} while (0)
	for (int s = 0; s < inflight; s++) START(s);
	struct epoll_event evs[256];
	while (open > 0) {
		int k = epoll_wait(ep, evs, 256, 1000);
		for (int i = 0; i < k; i++) {
			int slot = (int)evs[i].data.u32;
			struct conn *c = &conns[slot];
			int ended = 0, ok = 0;
			if (evs[i].events & EPOLLOUT) {
				int err = 0;
				socklen_t len = sizeof err;
				getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
				if (err != 0 || write(c->fd, payload, req) != (ssize_t)req) {
					ended = 1;
				} else {
					struct epoll_event ev = { .events = EPOLLIN, .data.u32 = slot };
					epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
				}
			} else {
				for (;;) {
					ssize_t r = read(c->fd, buf, sizeof buf);
					if (r > 0) {
						c->done += r;
						continue;
					}
					if (r < 0 && errno == EAGAIN) break;
					ended = 1;
					ok = r == 0 && c->done == resp;
					break;
				}
			}
			if (!ended) continue;
			if (ok) {
				completed++;
				if (nsamples < MAX_SAMPLES) samples[nsamples++] = (float)(now_us() - c->started);
			} else {
				failed++;
			}
			close(c->fd);
			open--;
			if (now_us() < until) START(slot);
		}
	}
	qsort(samples, nsamples, sizeof samples[0], cmp);
	printf("{\"completed\":%ld,\"failed\":%ld,\"p50\":%.1f,\"p99\":%.1f}\n", completed, failed,
	       nsamples ? samples[nsamples / 2] : 0.0, nsamples ? samples[(long)(nsamples * 0.99)] : 0.0);
	return 0;
}

int main(int argc, char **argv)
{
	signal(SIGPIPE, SIG_IGN);
	memset(payload, 'L', sizeof payload);
	if (argc == 5 && strcmp(argv[1], "server") == 0)
		return serve(argv[2], argv[3], strtoul(argv[4], NULL, 10));
	if (argc == 7 && strcmp(argv[1], "client") == 0) {
		size_t bytes = strtoul(argv[6], NULL, 10);
		if (bytes == 1) payload[0] = 's';
		return client(argv[2], atoi(argv[3]), atoi(argv[4]), atoi(argv[5]), bytes, bytes);
	}
	fprintf(stderr, "usage: rrgen server <host> <ports> <large bytes> | rrgen client <host> <port> <ms> <in flight> <1 or large bytes>\n");
	return 2;
}
