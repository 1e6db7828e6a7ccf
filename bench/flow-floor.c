// Loads bench/flow-floor.bpf.c and attaches every program, then holds them until stdin
// closes (the benchmark ends a phase by closing it, or by ending the process).
// usage: flow-floor OBJECT STORAGE(0|1|2) SOCKOPS(0|1) CGROUP_V2_ROOT
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	if (argc != 5) {
		fprintf(stderr, "usage: %s OBJECT STORAGE(0|1|2) SOCKOPS(0|1) CGROUP_V2_ROOT\n", argv[0]);
		return 2;
	}
	struct bpf_object *obj = bpf_object__open_file(argv[1], NULL);
	if (obj == NULL) {
		perror("bpf_object__open_file");
		return 1;
	}
	__u32 storage = atoi(argv[2]); /* 0 none, 1 sk_storage, 2 hash by cookie */
	struct bpf_map *rodata = bpf_object__find_map_by_name(obj, ".rodata");
	if (rodata == NULL || bpf_map__set_initial_value(rodata, &storage, sizeof storage) != 0) {
		fprintf(stderr, "cannot set floor_storage\n");
		return 1;
	}
	int with_sockops = atoi(argv[3]) != 0;
	struct bpf_program *sockops = bpf_object__find_program_by_name(obj, "floor_sockops");
	if (sockops == NULL || bpf_program__set_autoload(sockops, with_sockops) != 0) {
		fprintf(stderr, "cannot find floor_sockops\n");
		return 1;
	}
	if (bpf_object__load(obj) != 0) {
		perror("bpf_object__load");
		return 1;
	}
	int cgroup = open(argv[4], O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (cgroup < 0) {
		perror(argv[4]);
		return 1;
	}
	struct bpf_program *prog;
	bpf_object__for_each_program(prog, obj)
	{
		if (!bpf_program__autoload(prog))
			continue;
		struct bpf_link *link = strcmp(bpf_program__name(prog), "floor_sockops") == 0 ? bpf_program__attach_cgroup(prog, cgroup)
											    : bpf_program__attach(prog);
		if (link == NULL) {
			perror(bpf_program__name(prog));
			return 1;
		}
	}
	printf("ready\n");
	fflush(stdout);
	char buf[64];
	while (read(0, buf, sizeof buf) > 0) {
	}
	return 0;
}
