/*
 * fd-keeper: holds file descriptors (and a few names without one) for kuasard so that they
 * outlive it.
 *
 * containerd keeps one ttrpc connection per task open to a sandbox's task socket and does not
 * reconnect when it breaks. kuasard hands this process a duplicate of every task-socket listener
 * and every accepted task connection; while the keeper holds a copy, a crash of kuasard closes
 * nothing that containerd can see (its calls wait, new connects queue in the listen backlog),
 * and the restarted kuasard takes the descriptors back. The keeper never reads from, writes to
 * or otherwise touches a descriptor it keeps (it only looks at whether one is dead: see Lifetime).
 *
 * Usage: fd-keeper <control socket path>   (absolute)
 *
 * Start-up: only one keeper serves a directory. The keeper binds an abstract unix socket named
 * after the control socket's directory (device and inode) as a lock that the kernel releases
 * when the process dies; a second keeper finds it taken, prints "running" and exits 0. The
 * lock holder replaces a stale control socket file, listens on it (mode 0600), prints "ready"
 * on stdout and closes stdout; a start-up failure prints "error: <reason>" and exits 1. The
 * caller starts the keeper in its own session (setsid) so that it survives the caller.
 *
 * Protocol: SOCK_SEQPACKET, so every message is one command or one reply. Text, at most
 * MAX_MESSAGE bytes, no terminator. A name is 1..MAX_NAME bytes, neither NUL nor newline; the
 * keeper gives it no meaning (kuasard's names say what the descriptor is, and may carry a
 * little data with it). An empty message, like a hang-up, ends the client's connection.
 *
 *   PUT <name>   with one descriptor (SCM_RIGHTS), or none  ->  "OK" | "ERR <reason>"
 *   DROP <name>                                             ->  "OK" | "ERR <reason>"
 *   LIST         ->  one message per entry: "FD <name>" carrying a duplicate of its
 *                    descriptor, or "NOTE <name>" for a name kept without one; then "END"
 *
 * PUT keeps a descriptor, or only the name (a note), under a name that is not in use; DROP
 * forgets it and closes its descriptor. Replies come in the order of the commands. Descriptors
 * that arrive with any other command are closed. A client may send commands before reading the
 * replies to earlier ones; every command it sent is carried out, in order, even when it leaves
 * before reading their replies.
 *
 * LIST is one message per entry, so no reply grows with the number of entries; what bounds a
 * listing is the client's RLIMIT_NOFILE, since it receives a duplicate of every descriptor at
 * once (the kernel drops a passed descriptor the receiver has no room for and flags the message
 * MSG_CTRUNC). Notes cost the client no descriptor: kuasard keeps pending calls as notes.
 *
 * Lifetime: while no client is connected (kuasard is gone), the keeper checks every
 * PRUNE_INTERVAL_S, and as the last client leaves, whether what it holds can still serve
 * anyone, and closes what cannot: a connected socket whose peer hung up (containerd closed its
 * task connection: the pod was removed, or containerd gave up on it), and a listening unix
 * socket whose file is gone (its sandbox directory was removed: nobody can connect to it any
 * more). A client, when there is one, drops entries itself and the keeper leaves them alone.
 * The keeper exits (removing its socket file) when it holds no descriptor and no client is
 * connected (notes alone are worth nothing: they describe calls on connections), or
 * IDLE_EXIT_S seconds after start-up if nobody came. A client that does not read its replies
 * for SEND_TIMEOUT_S is disconnected. SIGTERM and SIGINT end it at once (the descriptors it
 * held close with it).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#define MAX_MESSAGE 4096
#define MAX_NAME 4000
#define MAX_CLIENTS 16
#define IDLE_EXIT_S 10
#define PRUNE_INTERVAL_S 2
#define SEND_TIMEOUT_S 5

struct entry {
	char *name;
	int fd; /* -1 for a note */
};

static struct entry *entries;
static size_t entry_count, entry_capacity;
/* How many entries hold a descriptor: the keeper lives while there are any (or a client). */
static size_t descriptor_count;

/* pollfds[0] is the listener, pollfds[1..client_count] the clients. */
static struct pollfd pollfds[1 + MAX_CLIENTS];
static size_t client_count;

static const char *socket_path;
static volatile sig_atomic_t stop_requested;

static void on_stop_signal(int signo)
{
	(void)signo;
	stop_requested = 1;
}

static void finish(int status)
{
	unlink(socket_path);
	exit(status);
}

static void fail_start(const char *what)
{
	printf("error: %s: %s\n", what, strerror(errno));
	exit(1);
}

/* ---- kept descriptors -------------------------------------------------------------------- */

static struct entry *find_entry(const char *name)
{
	for (size_t i = 0; i < entry_count; i++)
		if (strcmp(entries[i].name, name) == 0)
			return &entries[i];
	return NULL;
}

static const char *put_entry(const char *name, int fd)
{
	if (find_entry(name))
		return "ERR name in use";
	if (entry_count == entry_capacity) {
		size_t capacity = entry_capacity ? entry_capacity * 2 : 64;
		struct entry *grown = realloc(entries, capacity * sizeof(*grown));
		if (!grown)
			return "ERR out of memory";
		entries = grown;
		entry_capacity = capacity;
	}
	char *copy = strdup(name);
	if (!copy)
		return "ERR out of memory";
	entries[entry_count++] = (struct entry){ .name = copy, .fd = fd };
	if (fd >= 0)
		descriptor_count++;
	return "OK";
}

static void remove_entry(struct entry *entry)
{
	if (entry->fd >= 0) {
		close(entry->fd);
		descriptor_count--;
	}
	free(entry->name);
	*entry = entries[--entry_count];
}

static const char *drop_entry(const char *name)
{
	struct entry *found = find_entry(name);
	if (!found)
		return "ERR no such name";
	remove_entry(found);
	return "OK";
}

/* ---- pruning what nobody can use --------------------------------------------------------- */

/* A listening unix socket whose file is gone (or is no socket any more). */
static int is_orphaned_listener(int fd)
{
	struct sockaddr_un addr;
	socklen_t length = sizeof(addr);
	memset(&addr, 0, sizeof(addr));
	if (getsockname(fd, (struct sockaddr *)&addr, &length) < 0 || addr.sun_family != AF_UNIX)
		return 0;
	/* Unnamed and abstract sockets have no file to lose. */
	if (length <= offsetof(struct sockaddr_un, sun_path) || addr.sun_path[0] == '\0')
		return 0;
	addr.sun_path[sizeof(addr.sun_path) - 1] = '\0';
	struct stat st;
	if (stat(addr.sun_path, &st) < 0)
		return errno == ENOENT || errno == ENOTDIR;
	return !S_ISSOCK(st.st_mode);
}

/* A connected socket whose peer hung up: POLLRDHUP, without reading anything. */
static int is_hung_up(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLRDHUP };
	return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) != 0;
}

/* Whether a kept descriptor can still serve anyone; what is not a socket is always kept. */
static int is_dead(int fd)
{
	int listening = 0;
	socklen_t length = sizeof(listening);
	if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &length) < 0)
		return 0;
	return listening ? is_orphaned_listener(fd) : is_hung_up(fd);
}

static void prune_dead_entries(void)
{
	/* Backwards, so that removing an entry does not skip the one moved into its place. */
	for (size_t i = entry_count; i >= 1; i--)
		if (entries[i - 1].fd >= 0 && is_dead(entries[i - 1].fd))
			remove_entry(&entries[i - 1]);
}

/* ---- messages ---------------------------------------------------------------------------- */

/* Sends one message, with a descriptor attached when fd >= 0. */
static int send_message(int sock, const char *text, int fd)
{
	struct iovec iov = { .iov_base = (void *)text, .iov_len = strlen(text) };
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} control;
	struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
	if (fd >= 0) {
		memset(&control, 0, sizeof(control));
		msg.msg_control = control.buf;
		msg.msg_controllen = sizeof(control.buf);
		struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
		cmsg->cmsg_level = SOL_SOCKET;
		cmsg->cmsg_type = SCM_RIGHTS;
		cmsg->cmsg_len = CMSG_LEN(sizeof(int));
		memcpy(CMSG_DATA(cmsg), &fd, sizeof(int));
	}
	for (;;) {
		if (sendmsg(sock, &msg, MSG_NOSIGNAL) >= 0)
			return 0;
		if (errno != EINTR)
			return -1;
	}
}

static int send_list(int sock)
{
	char reply[MAX_MESSAGE + 1];
	for (size_t i = 0; i < entry_count; i++) {
		snprintf(reply, sizeof(reply), "%s %s", entries[i].fd >= 0 ? "FD" : "NOTE", entries[i].name);
		if (send_message(sock, reply, entries[i].fd) < 0)
			return -1;
	}
	return send_message(sock, "END", -1);
}

static int valid_name(const char *name)
{
	size_t length = strlen(name);
	return length > 0 && length <= MAX_NAME && !strchr(name, '\n');
}

/*
 * Carries out one command. `fds` are the descriptors that came with it: PUT keeps its one,
 * everything else is closed. `flags` are recvmsg's msg_flags. `quiet`: no reply is sent (the
 * client is leaving; see serve_departing). Returns -1 when the client must be disconnected.
 */
static int handle_command(int sock, char *text, int *fds, size_t fd_count, int flags, int quiet)
{
	const char *reply;
	int kept = 0;
	if (flags & MSG_TRUNC)
		reply = "ERR message too long";
	else if (flags & MSG_CTRUNC)
		/* The kernel had no room for a passed descriptor here (RLIMIT_NOFILE) and dropped it. */
		reply = "ERR descriptor lost: the keeper is out of descriptors";
	else if (strcmp(text, "LIST") == 0 && fd_count == 0)
		return quiet ? 0 : send_list(sock);
	else if (strncmp(text, "PUT ", 4) == 0) {
		if (fd_count > 1)
			reply = "ERR PUT takes one descriptor at most";
		else if (!valid_name(text + 4))
			reply = "ERR invalid name";
		else {
			reply = put_entry(text + 4, fd_count == 1 ? fds[0] : -1);
			kept = strcmp(reply, "OK") == 0;
		}
	} else if (strncmp(text, "DROP ", 5) == 0 && fd_count == 0)
		reply = drop_entry(text + 5);
	else
		reply = "ERR unknown command";
	for (size_t i = kept ? 1 : 0; i < fd_count; i++)
		close(fds[i]);
	return quiet ? 0 : send_message(sock, reply, -1);
}

/*
 * Reads and carries out one command (without its reply when `quiet`): 0 when one was served,
 * 1 when none was queued, -1 when the client is gone or must go.
 */
static int serve_client(int sock, int quiet)
{
	char text[MAX_MESSAGE + 1];
	struct iovec iov = { .iov_base = text, .iov_len = MAX_MESSAGE };
	union {
		char buf[CMSG_SPACE(sizeof(int) * 8)];
		struct cmsghdr align;
	} control;
	struct msghdr msg = {
		.msg_iov = &iov,
		.msg_iovlen = 1,
		.msg_control = control.buf,
		.msg_controllen = sizeof(control.buf),
	};
	ssize_t length;
	do
		length = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
	while (length < 0 && errno == EINTR);
	if (length < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return 1;
	if (length <= 0)
		return -1;
	text[length] = '\0';

	/* Every descriptor that arrived is ours now and must be kept or closed. */
	int fds[64];
	size_t fd_count = 0;
	for (struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg); cmsg; cmsg = CMSG_NXTHDR(&msg, cmsg)) {
		if (cmsg->cmsg_level != SOL_SOCKET || cmsg->cmsg_type != SCM_RIGHTS)
			continue;
		size_t n = (cmsg->cmsg_len - CMSG_LEN(0)) / sizeof(int);
		for (size_t i = 0; i < n && fd_count < sizeof(fds) / sizeof(fds[0]); i++)
			memcpy(&fds[fd_count++], CMSG_DATA(cmsg) + i * sizeof(int), sizeof(int));
	}
	return handle_command(sock, text, fds, fd_count, msg.msg_flags, quiet);
}

/*
 * A client that is leaving (it hung up, died, or a reply could not reach it) may have queued
 * commands behind the one last served: kuasard sends the notes of its pending calls without
 * waiting for each reply, and counts on every command it sent being carried out, in order,
 * whether or not it is still there to read the replies. They are, before the client goes (so
 * also before a next client, accepted after it, can list what is kept).
 */
static void serve_departing(int sock)
{
	while (serve_client(sock, 1) == 0)
		;
}

/* ---- clients ----------------------------------------------------------------------------- */

static void accept_client(int listener)
{
	int sock = accept4(listener, NULL, NULL, SOCK_CLOEXEC);
	if (sock < 0)
		return;
	if (client_count == MAX_CLIENTS) {
		close(sock);
		return;
	}
	/* A client that stops reading must not stall the others for long. */
	struct timeval timeout = { .tv_sec = SEND_TIMEOUT_S };
	setsockopt(sock, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
	client_count++;
	pollfds[client_count] = (struct pollfd){ .fd = sock, .events = POLLIN };
}

static void remove_client(size_t index)
{
	close(pollfds[index].fd);
	pollfds[index] = pollfds[client_count];
	client_count--;
}

/* ---- start-up ---------------------------------------------------------------------------- */

/* Takes the per-directory lock; returns 0 when another keeper holds it. `path` is absolute. */
static int take_lock(const char *path)
{
	char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
	snprintf(dir, sizeof(dir), "%s", path);
	char *slash = strrchr(dir, '/');
	slash[slash == dir ? 1 : 0] = '\0';
	struct stat st;
	if (stat(dir, &st) < 0)
		fail_start("stat of the socket directory");

	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	/* sun_path[0] stays NUL: the abstract namespace, released by the kernel when we die. */
	int length = snprintf(addr.sun_path + 1, sizeof(addr.sun_path) - 1, "kuasar-fd-keeper/%llx:%llx",
			      (unsigned long long)st.st_dev, (unsigned long long)st.st_ino);
	int lock = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (lock < 0)
		fail_start("socket");
	if (bind(lock, (struct sockaddr *)&addr, offsetof(struct sockaddr_un, sun_path) + 1 + length) < 0) {
		if (errno == EADDRINUSE)
			return 0;
		fail_start("bind of the lock");
	}
	return 1; /* the lock descriptor stays open for the life of the process */
}

static int listen_on(const char *path)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", path);
	int listener = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
	if (listener < 0)
		fail_start("socket");
	/* We hold the lock, so a socket file left here is a dead keeper's. */
	if (unlink(path) < 0 && errno != ENOENT)
		fail_start("removing the stale socket");
	mode_t previous = umask(0177);
	int bound = bind(listener, (struct sockaddr *)&addr, sizeof(addr));
	umask(previous);
	if (bound < 0)
		fail_start("bind");
	if (listen(listener, MAX_CLIENTS) < 0)
		fail_start("listen");
	return listener;
}

/*
 * Descriptors the starter let through (any it did not mark close-on-exec, such as one it
 * inherited itself) would be held for as long as the keeper lives: a pipe whose reader waits
 * for EOF would never get it. Only stdin, stdout and stderr are kept.
 */
static void close_inherited_descriptors(void)
{
	if (close_range(3, ~0U, 0) == 0)
		return;
	/* Kernels before 5.9: every descriptor /proc lists. */
	DIR *dir = opendir("/proc/self/fd");
	if (!dir)
		return;
	for (struct dirent *entry; (entry = readdir(dir));) {
		int fd = atoi(entry->d_name);
		if (fd > 2 && fd != dirfd(dir))
			close(fd);
	}
	closedir(dir);
}

/* Room for as many descriptors as the hard limit allows: each kept task connection takes one. */
static void raise_fd_limit(void)
{
	struct rlimit limit;
	if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
		limit.rlim_cur = limit.rlim_max;
		setrlimit(RLIMIT_NOFILE, &limit);
	}
}

/* stdout (the starter's pipe) is closed once the outcome is printed; /dev/null takes its place. */
static void close_stdout(void)
{
	fflush(stdout);
	int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
	if (null >= 0) {
		dup2(null, STDOUT_FILENO);
		close(null);
	}
}

int main(int argc, char **argv)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc != 2) {
		printf("error: usage: fd-keeper <control socket path>\n");
		return 2;
	}
	socket_path = argv[1];
	if (socket_path[0] != '/' || strlen(socket_path) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
		printf("error: the socket path must be absolute and fit a unix socket address\n");
		return 1;
	}
	close_inherited_descriptors();
	/* Hold no directory busy (the caller's working directory may go away). */
	if (chdir("/") < 0)
		fail_start("chdir /");
	signal(SIGPIPE, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	/* SIGTERM and SIGINT are only let in while waiting in ppoll(), so none goes unnoticed. */
	struct sigaction stop = { .sa_handler = on_stop_signal };
	sigaction(SIGTERM, &stop, NULL);
	sigaction(SIGINT, &stop, NULL);
	sigset_t stop_signals, waiting_mask;
	sigemptyset(&stop_signals);
	sigaddset(&stop_signals, SIGTERM);
	sigaddset(&stop_signals, SIGINT);
	sigprocmask(SIG_BLOCK, &stop_signals, &waiting_mask);

	if (!take_lock(socket_path)) {
		printf("running\n");
		return 0;
	}
	raise_fd_limit();
	pollfds[0] = (struct pollfd){ .fd = listen_on(socket_path), .events = POLLIN };
	printf("ready\n");
	close_stdout();

	for (;;) {
		/* Without clients: exit after IDLE_EXIT_S if nothing came, else prune now and then. */
		struct timespec idle_exit = { .tv_sec = IDLE_EXIT_S }, prune = { .tv_sec = PRUNE_INTERVAL_S };
		struct timespec *timeout = client_count > 0 ? NULL : descriptor_count == 0 ? &idle_exit : &prune;
		int ready = ppoll(pollfds, 1 + client_count, timeout, &waiting_mask);
		if (stop_requested)
			finish(0);
		if (ready < 0) {
			if (errno == EINTR)
				continue;
			finish(1);
		}
		if (ready == 0) {
			prune_dead_entries();
			if (descriptor_count == 0)
				finish(0); /* started but nobody came, or all it held is dead */
			continue;
		}
		/* Backwards, so that removing a client does not skip the one moved into its place. */
		for (size_t i = client_count; i >= 1; i--) {
			if (pollfds[i].revents == 0)
				continue;
			if (serve_client(pollfds[i].fd, 0) < 0) {
				serve_departing(pollfds[i].fd);
				remove_client(i);
				if (client_count > 0)
					continue;
				prune_dead_entries();
				if (descriptor_count == 0)
					finish(0);
			}
		}
		if (pollfds[0].revents & POLLIN)
			accept_client(pollfds[0].fd);
	}
}
