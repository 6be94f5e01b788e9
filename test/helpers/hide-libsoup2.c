/*
 * LD_PRELOAD shim for the GStreamer interop test (test/interop-gstreamer.test.ts); compiled at
 * test time with `cc -shared -fPIC` into a temporary directory, never shipped.
 *
 * Debian 12's whip-client (package simple-whip-client) links libsoup-2.4 itself, and webrtcbin's
 * ICE agent (libnice → gupnp-igd → gssdp) pulls in libsoup-3.0 when GStreamer loads the webrtc
 * plugin. libsoup 3's library constructor (soup_init(), libsoup/soup-init.c) then looks for a
 * libsoup-2-only symbol in the process's global scope and aborts if it finds one:
 *
 *   libsoup 3.0–3.2 (Debian 12 has 3.2.3):
 *       module = g_module_open (NULL, 0);
 *       g_module_symbol (module, "soup_uri_new", &func);   → g_error ("libsoup2 symbols detected. …")
 *   later libsoup 3 releases:
 *       handle = dlopen (NULL, RTLD_LAZY | RTLD_GLOBAL);
 *       func = dlsym (handle, "soup_uri_new");             → the same g_error
 *
 * The two libraries are never used for the same thing here (whip-client does its HTTP with
 * libsoup 2; libsoup 3 is only linked by gssdp for UPnP, which nothing uses), so this shim
 * interposes both g_module_symbol() and dlsym() and answers "not found" to that one lookup: the
 * name "soup_uri_new" asked by code inside libsoup-3. Every other call goes to the real function.
 *
 * Limitation: a dlsym(RTLD_NEXT, …) forwarded through this shim is resolved relative to the shim
 * (the first object), not to its caller. Nothing in whip-client's process does that.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stddef.h>
#include <string.h>

typedef void *(*dlsym_fn)(void *, const char *);
typedef int (*g_module_symbol_fn)(void *, const char *, void **);

static dlsym_fn real_dlsym(void) {
  static dlsym_fn real;
  if (real == NULL) {
    /* dlvsym is not interposed, so it reaches glibc's own dlsym, whose symbol version depends
     * on the glibc release and the architecture: try the current one first. */
    static const char *const versions[] = {"GLIBC_2.34", "GLIBC_2.2.5", "GLIBC_2.17", "GLIBC_2.0", "GLIBC_2.1", NULL};
    for (int i = 0; versions[i] != NULL && real == NULL; i++) real = (dlsym_fn)dlvsym(RTLD_NEXT, "dlsym", versions[i]);
  }
  return real;
}

/* Is this the libsoup-3 self-check: the libsoup-2 symbol, asked from inside libsoup-3? */
static int is_soup2_probe(const char *symbol, const void *caller) {
  if (symbol == NULL || strcmp(symbol, "soup_uri_new") != 0) return 0;
  Dl_info info;
  if (dladdr(caller, &info) == 0 || info.dli_fname == NULL) return 0;
  return strstr(info.dli_fname, "libsoup-3") != NULL;
}

int g_module_symbol(void *module, const char *symbol, void **result) {
  if (is_soup2_probe(symbol, __builtin_return_address(0))) {
    if (result != NULL) *result = NULL;
    return 0; /* FALSE: not found */
  }
  static g_module_symbol_fn real;
  if (real == NULL) {
    dlsym_fn lookup = real_dlsym();
    if (lookup != NULL) real = (g_module_symbol_fn)lookup(RTLD_NEXT, "g_module_symbol");
  }
  if (real == NULL) {
    if (result != NULL) *result = NULL;
    return 0;
  }
  return real(module, symbol, result);
}

void *dlsym(void *handle, const char *symbol) {
  if (is_soup2_probe(symbol, __builtin_return_address(0))) return NULL;
  dlsym_fn real = real_dlsym();
  return real != NULL ? real(handle, symbol) : NULL;
}
