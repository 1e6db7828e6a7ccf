{
  "targets": [
    {
      "target_name": "traffic_native",
      "sources": ["native/transparent.cc", "native/connect.cc", "native/splice.cc", "native/udp.cc", "native/hello-key.cc"],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-Wall", "-Wextra"],
      "cflags_cc!": ["-fno-exceptions"]
    },
    {
      "target_name": "flow",
      "sources": ["native/flow/flow_addon.cc"],
      "variables": {
        "flow_has_libbpf": "<!(pkg-config --exists libbpf && echo 1 || echo 0)"
      },
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "native/flow",
        "<(SHARED_INTERMEDIATE_DIR)/flow-bpf"
      ],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED", "HAVE_LIBBPF=<(flow_has_libbpf)"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-Wall", "-Wextra"],
      "cflags_cc!": ["-fno-exceptions"],
      "conditions": [
        ["flow_has_libbpf==1", {
          "libraries": ["<!@(node native/flow/libbpf-link.js)"],
          "actions": [
            {
              "action_name": "flow_bpf_skeleton",
              "inputs": ["native/flow/flow.bpf.c", "native/flow/flow.h", "native/flow/build-bpf.js"],
              "outputs": ["<(SHARED_INTERMEDIATE_DIR)/flow-bpf/flow_skel_gen.h"],
              "action": ["node", "native/flow/build-bpf.js", "<(SHARED_INTERMEDIATE_DIR)/flow-bpf", "<(target_arch)"]
            }
          ]
        }]
      ]
    }
  ]
}
