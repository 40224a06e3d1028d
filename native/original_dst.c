/*
 * original_dst: the destination a connection had before iptables REDIRECT rewrote it.
 *
 * Exposes one N-API function, getOriginalDst(fd), which asks netfilter for the pre-NAT
 * destination of an accepted TCP socket: SO_ORIGINAL_DST for IPv4 and IP6T_SO_ORIGINAL_DST for
 * IPv6 (both option 80, at SOL_IP / SOL_IPV6). It returns { address, port }, or null when the
 * kernel has no NAT record for the socket (not redirected, conntrack not loaded, not a TCP/IP
 * socket). It never throws on a bad fd: the proxy's data plane treats "unknown" as "not
 * intercepted". Linux only; on other systems the function always returns null.
 */
#include <node_api.h>
#include <string.h>

#ifdef __linux__
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#endif

#ifndef SO_ORIGINAL_DST
#define SO_ORIGINAL_DST 80
#endif
#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST 80
#endif

static napi_value make_result(napi_env env, const char *address, unsigned port) {
  napi_value obj, addr, prt;
  if (napi_create_object(env, &obj) != napi_ok) return NULL;
  if (napi_create_string_utf8(env, address, NAPI_AUTO_LENGTH, &addr) != napi_ok) return NULL;
  if (napi_create_uint32(env, port, &prt) != napi_ok) return NULL;
  napi_set_named_property(env, obj, "address", addr);
  napi_set_named_property(env, obj, "port", prt);
  return obj;
}

static napi_value get_original_dst(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  napi_value nul;
  int32_t fd = -1;
  napi_get_null(env, &nul);
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 1) return nul;
  if (napi_get_value_int32(env, argv[0], &fd) != napi_ok || fd < 0) return nul;
#ifdef __linux__
  {
    struct sockaddr_storage local;
    socklen_t len = sizeof(local);
    char text[INET6_ADDRSTRLEN];
    memset(&local, 0, sizeof(local));
    if (getsockname(fd, (struct sockaddr *)&local, &len) != 0) return nul;
    if (local.ss_family == AF_INET) {
      struct sockaddr_in od;
      socklen_t odlen = sizeof(od);
      memset(&od, 0, sizeof(od));
      if (getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &od, &odlen) != 0) return nul;
      if (inet_ntop(AF_INET, &od.sin_addr, text, sizeof(text)) == NULL) return nul;
      return make_result(env, text, ntohs(od.sin_port));
    }
    if (local.ss_family == AF_INET6) {
      struct sockaddr_in6 od6;
      socklen_t od6len = sizeof(od6);
      memset(&od6, 0, sizeof(od6));
      if (getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &od6, &od6len) == 0) {
        if (inet_ntop(AF_INET6, &od6.sin6_addr, text, sizeof(text)) == NULL) return nul;
        return make_result(env, text, ntohs(od6.sin6_port));
      }
      /* An IPv4 connection accepted on a dual-stack socket is still NATed by iptables (v4). */
      {
        struct sockaddr_in od;
        socklen_t odlen = sizeof(od);
        memset(&od, 0, sizeof(od));
        if (getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &od, &odlen) != 0) return nul;
        if (inet_ntop(AF_INET, &od.sin_addr, text, sizeof(text)) == NULL) return nul;
        return make_result(env, text, ntohs(od.sin_port));
      }
    }
  }
#endif
  return nul;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_value fn;
  if (napi_create_function(env, "getOriginalDst", NAPI_AUTO_LENGTH, get_original_dst, NULL, &fn) != napi_ok) return NULL;
  napi_set_named_property(env, exports, "getOriginalDst", fn);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)
