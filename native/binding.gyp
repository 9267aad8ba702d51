{
  "targets": [
    {
      "target_name": "reflex_uring",
      "sources": ["src/addon.c", "src/ring.c", "src/buffers.c", "src/cache-evict.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags_c": ["-std=gnu11", "-O2", "-Wall", "-Wextra", "-Wno-unused-parameter"]
    }
  ]
}
