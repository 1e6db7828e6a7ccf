/*
 * The floor of a transparent TCP proxy, for the forward benchmark: the least any proxy
 * behind an nft REDIRECT does per connection, with nothing else. Each thread has its own
 * SO_REUSEPORT listener and epoll loop; per connection: accept, SO_ORIGINAL_DST, a
 * non-blocking connect to that destination, bytes copied both ways through a small buffer
 * (cheaper than splice for requests and answers of a few KiB), each FIN passed on, both
 * sockets closed when both directions ended. No flow, no messages, no logging, no limits.
 * What `forward` spends per connection beyond this is its own; what HAProxy spends beyond
 * it is what a full proxy adds.
 *
 *   proxyfloor <port> <threads>
 *       Listens on 0.0.0.0:<port> with <threads> threads; prints {"ready":true} once all
 *       listen; runs until SIGTERM.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define BUF 16384
/* linux/netfilter_ipv4.h, which clashes with netinet/in.h. */
#ifndef SO_ORIGINAL_DST
#define SO_ORIGINAL_DST 80
#endif

struct conn;

struct end {
	struct conn *c;
	int fd;
};

/* One direction: bytes read from `from`, not yet written to `to`. */
struct dir {
	char buf[BUF];
	size_t len, off;
	int eof;  /* the source sent its FIN */
	int shut; /* the FIN was passed on */
};

struct conn {
	struct end a, b; /* client, upstream */
	struct dir ab, ba;
};

static int port;

static void finish(struct conn *c)
{
	close(c->a.fd);
	close(c->b.fd);
	free(c);
}

/* Moves what it can one way without blocking; -1 on an error. */
static int move(struct dir *d, int from, int to)
{
	for (;;) {
		if (d->len == d->off && !d->eof) {
			ssize_t n = recv(from, d->buf, BUF, 0);
			if (n > 0) {
				d->len = (size_t)n;
				d->off = 0;
			} else if (n == 0) {
				d->eof = 1;
			} else if (errno == EAGAIN || errno == ENOTCONN) {
				break;
			} else if (errno != EINTR) {
				return -1;
			}
		}
		if (d->len > d->off) {
			ssize_t n = send(to, d->buf + d->off, d->len - d->off, MSG_NOSIGNAL);
			if (n > 0) {
				d->off += (size_t)n;
				continue;
			}
			if (n < 0 && (errno == EAGAIN || errno == ENOTCONN))
				break;
			if (n < 0 && errno == EINTR)
				continue;
			return -1;
		}
		if (d->eof)
			break;
	}
	if (d->eof && d->len == d->off && !d->shut) {
		if (shutdown(to, SHUT_WR) != 0 && errno != ENOTCONN)
			return -1;
		d->shut = 1;
	}
	return 0;
}

static void pump(struct conn *c)
{
	if (move(&c->ab, c->a.fd, c->b.fd) != 0 || move(&c->ba, c->b.fd, c->a.fd) != 0 || (c->ab.shut && c->ba.shut))
		finish(c);
}

static void accept_all(int ep, int lfd)
{
	for (;;) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		struct sockaddr_in dst;
		socklen_t len = sizeof dst;
		int one = 1;
		if (getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &dst, &len) != 0) {
			close(fd);
			continue;
		}
		int up = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (up < 0) {
			close(fd);
			continue;
		}
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		setsockopt(up, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		if (connect(up, (struct sockaddr *)&dst, sizeof dst) != 0 && errno != EINPROGRESS) {
			close(fd);
			close(up);
			continue;
		}
		struct conn *c = calloc(1, sizeof *c);
		if (!c) {
			close(fd);
			close(up);
			continue;
		}
		c->a = (struct end){c, fd};
		c->b = (struct end){c, up};
		struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET};
		ev.data.ptr = &c->a;
		epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
		ev.data.ptr = &c->b;
		epoll_ctl(ep, EPOLL_CTL_ADD, up, &ev);
		pump(c);
	}
}

static void *worker(void *ready)
{
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	int one = 1;
	struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((unsigned short)port)};
	setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
	setsockopt(lfd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
	if (bind(lfd, (struct sockaddr *)&addr, sizeof addr) != 0 || listen(lfd, 4096) != 0) {
		perror("proxyfloor: listen");
		exit(1);
	}
	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
	epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
	pthread_barrier_wait(ready);
	struct epoll_event events[256];
	for (;;) {
		int n = epoll_wait(ep, events, 256, -1);
		for (int i = 0; i < n; i++) {
			struct end *e = events[i].data.ptr;
			if (!e) {
				accept_all(ep, lfd);
				continue;
			}
			if ((void *)e == (void *)1)
				continue; /* its connection was handled (or freed) earlier in this batch */
			struct conn *c = e->c;
			/* Both ends are handled now, and c may be freed: later events of this batch for it are dropped. */
			for (int j = i + 1; j < n; j++)
				if (events[j].data.ptr == &c->a || events[j].data.ptr == &c->b)
					events[j].data.ptr = (void *)1;
			if (events[i].events & EPOLLERR) {
				int err = 0;
				socklen_t len = sizeof err;
				getsockopt(e->fd, SOL_SOCKET, SO_ERROR, &err, &len);
				if (err != 0) {
					finish(c);
					continue;
				}
			}
			pump(c);
		}
	}
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc != 3) {
		fprintf(stderr, "usage: proxyfloor <port> <threads>\n");
		return 2;
	}
	port = atoi(argv[1]);
	int threads = atoi(argv[2]);
	if (threads < 1)
		threads = 1;
	pthread_barrier_t ready;
	pthread_barrier_init(&ready, NULL, (unsigned)threads + 1);
	for (int i = 0; i < threads; i++) {
		pthread_t t;
		pthread_create(&t, NULL, worker, &ready);
	}
	pthread_barrier_wait(&ready);
	printf("{\"ready\":true}\n");
	fflush(stdout);
	pause();
	return 0;
}
