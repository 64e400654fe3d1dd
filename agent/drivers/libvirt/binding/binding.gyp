{
  "targets": [
    {
      "target_name": "novamesh_libvirt",
      "sources": [
        "src/addon.cc",
        "src/connection.cc",
        "src/domain.cc",
        "src/domain-jobs.cc",
        "src/errors.cc"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")"
      ],
      "cflags_cc": [
        "<!@(pkg-config --cflags libvirt libvirt-qemu)",
        "-std=c++17",
        "-Wall",
        "-Wextra",
        "-Wno-unused-parameter"
      ],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++17", "-std=gnu++20"],
      "libraries": ["<!@(pkg-config --libs libvirt libvirt-qemu)"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"]
    }
  ]
}
