/*
 * Short TCP connections at a set rate, for the flow source's benchmark and load test.
 * A Node load generator tops out at a few thousand connections/s on two cores; this one
 * spends its time in the kernel, where the cost being measured is.
 *
 *   loadgen server <host> <port>
 *       Accepts and closes at once (the server closes first, so the client's ephemeral
 *       port is free again as soon as it closes in turn). Prints {"port":N,"pid":P} when
 *       listening; on SIGTERM/SIGINT prints {"accepted":N,"cpuMs":T} and exits.
 *   loadgen client <host> <port> <rate> <seconds> [concurrency] [source address]
 *       Opens <rate> connections per second (0: as fast as <concurrency> allows) for
 *       <seconds>, each with a non-blocking connect (from <source address> when given);
 *       closes each once the server's FIN arrives (a reset counts as failed). Prints one JSON line: attempted, connected, failed, unfinished, the
 *       time the opens took (ms), the achieved rate, its CPU time (ms) and its pid.
 *
 * Every connection is counted as exactly one of connected / failed / unfinished, so a
 * caller can tell how many close events each end must produce.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* After the opens stop, connections still in flight get this long to finish. */
#define DRAIN_MS 3000

static volatile sig_atomic_t stopping;

static void on_signal(int sig)
{
	(void)sig;
	stopping = 1;
}

static double now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* CPU time this process used (user + system, ms): the load's own cost per connection. */
static double cpu_ms(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e3 + (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e3;
}

static void die(const char *what)
{
	fprintf(stderr, "loadgen: %s: %s\n", what, strerror(errno));
	exit(1);
}

/* host:port as a sockaddr of either family. */
static socklen_t address(const char *host, const char *port_text, struct sockaddr_storage *ss)
{
	char *end = NULL;
	long port = strtol(port_text, &end, 10);
	memset(ss, 0, sizeof(*ss));
	if (*port_text == '\0' || *end != '\0' || port < 0 || port > 65535) {
		fprintf(stderr, "loadgen: bad port %s\n", port_text);
		exit(2);
	}
	struct sockaddr_in *v4 = (struct sockaddr_in *)ss;
	if (inet_pton(AF_INET, host, &v4->sin_addr) == 1) {
		v4->sin_family = AF_INET;
		v4->sin_port = htons((uint16_t)port);
		return sizeof(*v4);
	}
	struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)ss;
	if (inet_pton(AF_INET6, host, &v6->sin6_addr) == 1) {
		v6->sin6_family = AF_INET6;
		v6->sin6_port = htons((uint16_t)port);
		return sizeof(*v6);
	}
	fprintf(stderr, "loadgen: bad address %s\n", host);
	exit(2);
}

static void handle_signals(void)
{
	/* No SA_RESTART: a blocked accept() or epoll_wait() returns EINTR and sees the flag. */
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
}

static int server(const char *host, const char *port_text)
{
	struct sockaddr_storage ss;
	socklen_t len = address(host, port_text, &ss);
	int one = 1;
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		die("socket");
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&ss, len) != 0)
		die("bind");
	if (listen(fd, 4096) != 0)
		die("listen");
	len = sizeof(ss);
	getsockname(fd, (struct sockaddr *)&ss, &len);
	unsigned port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port : ((struct sockaddr_in6 *)&ss)->sin6_port);
	handle_signals();
	printf("{\"port\":%u,\"pid\":%d}\n", port, (int)getpid());
	fflush(stdout);

	unsigned long long accepted = 0;
	while (!stopping) {
		int c = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0) {
			if (errno == EINTR || errno == ECONNABORTED)
				continue;
			if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
				usleep(1000);
				continue;
			}
			die("accept4");
		}
		close(c);
		accepted++;
	}
	printf("{\"accepted\":%llu,\"cpuMs\":%.1f}\n", accepted, cpu_ms());
	fflush(stdout);
	return 0;
}

static unsigned long parse_count(const char *text, const char *what, unsigned long max)
{
	char *end = NULL;
	errno = 0;
	unsigned long v = strtoul(text, &end, 10);
	if (*text == '\0' || *end != '\0' || errno != 0 || v > max) {
		fprintf(stderr, "loadgen: bad %s %s\n", what, text);
		exit(2);
	}
	return v;
}

static int client(const char *host, const char *port_text, const char *rate_text, const char *seconds_text, const char *concurrency_text,
		  const char *source)
{
	struct sockaddr_storage ss, from;
	socklen_t len = address(host, port_text, &ss);
	socklen_t from_len = source == NULL ? 0 : address(source, "0", &from);
	unsigned long rate = parse_count(rate_text, "rate", 10000000);
	unsigned long seconds = parse_count(seconds_text, "seconds", 3600);
	unsigned long concurrency = parse_count(concurrency_text, "concurrency", 60000);
	if (concurrency == 0)
		concurrency = 1;
	int ep = epoll_create1(EPOLL_CLOEXEC);
	if (ep < 0)
		die("epoll_create1");
	handle_signals();

	unsigned long long attempted = 0, connected = 0, failed = 0, inflight = 0;
	double start = now_ms();
	double duration = seconds * 1000.0;
	double opens_ended = 0;
	struct epoll_event events[512];

	for (;;) {
		double t = now_ms() - start;
		if (t < duration && !stopping) {
			/* Paced: as many opens as the schedule says are due, within the concurrency. */
			unsigned long long due = rate == 0 ? ~0ULL : (unsigned long long)(rate * t / 1000.0) + 1;
			while (attempted < due && inflight < concurrency) {
				int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
				if (fd < 0) {
					if (errno == EMFILE || errno == ENFILE)
						break;
					die("socket");
				}
				attempted++;
				if (source != NULL) {
					/* Leave the port to connect(): bind() alone would pick one per source address, not per 4-tuple. */
					int one = 1;
					setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
					if (bind(fd, (struct sockaddr *)&from, from_len) != 0)
						die("bind");
				}
				if (connect(fd, (struct sockaddr *)&ss, len) != 0 && errno != EINPROGRESS) {
					/* Refused at once, or no local port left: the socket still closes as one. */
					failed++;
					close(fd);
					continue;
				}
				/* Readable once the server's FIN (or an error) arrives. */
				struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP, .data.fd = fd };
				if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) != 0)
					die("epoll_ctl");
				inflight++;
			}
		} else if (opens_ended == 0) {
			opens_ended = t;
		}
		if (opens_ended != 0 && (inflight == 0 || t > opens_ended + DRAIN_MS))
			break;
		int n = epoll_wait(ep, events, 512, 1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			die("epoll_wait");
		}
		for (int i = 0; i < n; i++) {
			int fd = events[i].data.fd;
			int err = 0;
			socklen_t el = sizeof(err);
			getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el);
			if (err == 0)
				connected++;
			else
				failed++;
			close(fd);
			inflight--;
		}
	}
	if (opens_ended == 0)
		opens_ended = now_ms() - start;
	double elapsed = now_ms() - start;
	/* Closes of the unfinished ones happen at exit. */
	printf("{\"attempted\":%llu,\"connected\":%llu,\"failed\":%llu,\"unfinished\":%llu,\"ms\":%.1f,\"elapsedMs\":%.1f,\"rate\":%.1f,\"cpuMs\":%.1f,\"pid\":%d}\n",
	       attempted, connected, failed, inflight, opens_ended, elapsed, opens_ended > 0 ? connected * 1000.0 / opens_ended : 0.0,
	       cpu_ms(), (int)getpid());
	fflush(stdout);
	return 0;
}

int main(int argc, char **argv)
{
	if (argc == 4 && strcmp(argv[1], "server") == 0)
		return server(argv[2], argv[3]);
	if (argc >= 6 && argc <= 8 && strcmp(argv[1], "client") == 0)
		return client(argv[2], argv[3], argv[4], argv[5], argc >= 7 ? argv[6] : "256", argc == 8 ? argv[7] : NULL);
	fprintf(stderr, "usage: loadgen server <host> <port>\n"
			"       loadgen client <host> <port> <rate> <seconds> [concurrency] [source address]\n");
	return 2;
}
