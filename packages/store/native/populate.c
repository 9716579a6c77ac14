/*
 * populate(buffer, offset, length, progress?): Promise<void>
 *
 * Faults [offset, offset + length) of a shared writable file mapping in, writable
 * (madvise MADV_POPULATE_WRITE, Linux 5.14+), on the libuv thread pool instead of the caller's
 * thread. Populating changes no byte, so it may run while the caller writes the same mapping.
 * The Buffer is referenced until the work completes, so the mapping cannot be collected (and
 * unmapped) under it. Rejects with an Error whose `code` is the errno name.
 *
 * `progress`, an Int32Array over a SharedArrayBuffer: the pool thread stores offset + length in
 * progress[0] when the range is faulted in, or the errno in progress[1] when it failed, at once.
 * The promise settles only when the event loop next runs its completions, which a caller busy
 * in a loop of resolved promises may not let happen for a long time; progress it can poll.
 */
/* SEEK_DATA and SEEK_HOLE: glibc declares them for _GNU_SOURCE. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <unistd.h>
#include <node_api.h>

#include "crc32.h"

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

typedef struct {
  napi_async_work work;
  napi_ref buffer;
  napi_deferred deferred;
  napi_ref progress_ref;
  int32_t *progress;
  int32_t end;
  char *addr;
  size_t length;
  int err;
} job_t;

static const char *errno_code(int err) {
  switch (err) {
    case ENOSPC: return "ENOSPC";
    case ENOMEM: return "ENOMEM";
    case EFAULT: return "EFAULT";
    case EINVAL: return "EINVAL";
    case EIO: return "EIO";
    case EDQUOT: return "EDQUOT";
    case EINTR: return "EINTR";
    case EAGAIN: return "EAGAIN";
    case EPERM: return "EPERM";
    case EHWPOISON: return "EHWPOISON";
    default: return "EUNKNOWN";
  }
}

static void execute(napi_env env, void *data) {
  job_t *job = (job_t *)data;
  (void)env;
  job->err = 0;
  for (;;) {
    if (madvise(job->addr, job->length, MADV_POPULATE_WRITE) == 0) {
      if (job->progress) __atomic_store_n(&job->progress[0], job->end, __ATOMIC_RELEASE);
      return;
    }
    if (errno != EINTR) break;
  }
  job->err = errno;
  if (job->progress) __atomic_store_n(&job->progress[1], job->err, __ATOMIC_RELEASE);
}

static void complete(napi_env env, napi_status status, void *data) {
  job_t *job = (job_t *)data;
  napi_value result;
  if (status == napi_ok && job->err == 0) {
    napi_get_undefined(env, &result);
    napi_resolve_deferred(env, job->deferred, result);
  } else {
    int err = status == napi_ok ? job->err : ECANCELED;
    const char *code = status == napi_ok ? errno_code(err) : "ECANCELED";
    char text[160];
    snprintf(text, sizeof text, "madvise(MADV_POPULATE_WRITE) failed: %s (%s)", strerror(err), code);
    napi_value message, code_value, errno_value, error;
    napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &message);
    napi_create_string_utf8(env, code, NAPI_AUTO_LENGTH, &code_value);
    napi_create_int32(env, err, &errno_value);
    napi_create_error(env, NULL, message, &error);
    napi_set_named_property(env, error, "code", code_value);
    napi_set_named_property(env, error, "errno", errno_value);
    napi_reject_deferred(env, job->deferred, error);
  }
  napi_delete_reference(env, job->buffer);
  if (job->progress_ref) napi_delete_reference(env, job->progress_ref);
  napi_delete_async_work(env, job->work);
  free(job);
}

static napi_value throw_range(napi_env env, const char *text) {
  napi_throw_range_error(env, NULL, text);
  return NULL;
}

/* Reads (start, length) from two JS numbers: true when both are non-negative and within `size`. */
static bool read_range(napi_env env, napi_value start_value, napi_value length_value, size_t size, int64_t *start, int64_t *length) {
  return napi_get_value_int64(env, start_value, start) == napi_ok && napi_get_value_int64(env, length_value, length) == napi_ok && *start >= 0 && *length >= 0 &&
         (uint64_t)*start + (uint64_t)*length <= size;
}

static napi_value populate(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 3) return throw_range(env, "populate(buffer, offset, length, progress?)");
  bool is_buffer = false;
  napi_is_buffer(env, argv[0], &is_buffer);
  if (!is_buffer) return throw_range(env, "populate: buffer must be a Buffer");
  void *data;
  size_t size;
  if (napi_get_buffer_info(env, argv[0], &data, &size) != napi_ok) return throw_range(env, "populate: cannot read the buffer");
  int64_t offset, length;
  if (!read_range(env, argv[1], argv[2], size, &offset, &length)) return throw_range(env, "populate: offset and length must be numbers within the buffer");
  int32_t *progress = NULL;
  if (argc > 3) {
    napi_valuetype type;
    napi_typeof(env, argv[3], &type);
    if (type != napi_undefined) {
      bool is_typedarray = false;
      napi_is_typedarray(env, argv[3], &is_typedarray);
      napi_typedarray_type kind;
      size_t count;
      void *pdata;
      napi_value arraybuffer;
      size_t byte_offset;
      if (!is_typedarray || napi_get_typedarray_info(env, argv[3], &kind, &count, &pdata, &arraybuffer, &byte_offset) != napi_ok || kind != napi_int32_array || count < 2) {
        return throw_range(env, "populate: progress must be an Int32Array of at least 2 elements");
      }
      if (offset + length > INT32_MAX) return throw_range(env, "populate: range end does not fit progress");
      progress = (int32_t *)pdata;
    }
  }
  uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
  uintptr_t start = (uintptr_t)data + (uintptr_t)offset;
  uintptr_t aligned = start - (start % page);

  job_t *job = (job_t *)calloc(1, sizeof(job_t));
  if (!job) return throw_range(env, "populate: out of memory");
  job->addr = (char *)aligned;
  job->length = (size_t)length + (size_t)(start - aligned);
  job->progress = progress;
  job->end = (int32_t)(offset + length);
  if (progress) napi_create_reference(env, argv[3], 1, &job->progress_ref);
  napi_value promise, name;
  napi_create_promise(env, &job->deferred, &promise);
  napi_create_reference(env, argv[0], 1, &job->buffer);
  napi_create_string_utf8(env, "mqts.populate", NAPI_AUTO_LENGTH, &name);
  napi_create_async_work(env, NULL, name, execute, complete, job, &job->work);
  if (napi_queue_async_work(env, job->work) != napi_ok) {
    napi_delete_async_work(env, job->work);
    napi_delete_reference(env, job->buffer);
    if (job->progress_ref) napi_delete_reference(env, job->progress_ref);
    free(job);
    return throw_range(env, "populate: cannot queue work");
  }
  return promise;
}

/*
 * copy(target, targetStart, source, sourceStart, length): memmove between two Buffers. V8 copies
 * into a SharedArrayBuffer with relaxed atomic word moves (TypedArray#set and Buffer#copy both),
 * several times slower than memmove for a 1 KiB body; sync flush stages records in shared memory.
 */
static napi_value copy(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 5) return throw_range(env, "copy(target, targetStart, source, sourceStart, length)");
  void *target, *source;
  size_t target_size, source_size;
  int64_t target_start, source_start, length;
  if (napi_get_buffer_info(env, argv[0], &target, &target_size) != napi_ok || napi_get_buffer_info(env, argv[2], &source, &source_size) != napi_ok) return throw_range(env, "copy: target and source must be Buffers");
  if (!read_range(env, argv[1], argv[4], target_size, &target_start, &length) || !read_range(env, argv[3], argv[4], source_size, &source_start, &length)) {
    return throw_range(env, "copy: offsets and length must be numbers within the buffers");
  }
  memmove((char *)target + target_start, (const char *)source + source_start, (size_t)length);
  return NULL;
}

/*
 * crc32(buffer, start, length): CRC-32 of buffer[start, start + length), unsigned.
 */
static napi_value crc32(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 3) return throw_range(env, "crc32(buffer, start, length)");
  void *data;
  size_t size;
  int64_t start, length;
  if (napi_get_buffer_info(env, argv[0], &data, &size) != napi_ok) return throw_range(env, "crc32: buffer must be a Buffer");
  if (!read_range(env, argv[1], argv[2], size, &start, &length)) return throw_range(env, "crc32: start and length must be numbers within the buffer");
  napi_value result;
  napi_create_uint32(env, crc32_ieee((const uint8_t *)data + start, (size_t)length), &result);
  return result;
}

/*
 * The arguments of bodyCrcs and checkBodyCrcs: (buffer, list, count), `list` a Float64Array of
 * `count` triples. `usage` names the call, `buffer_error` and the others its errors. False (with
 * a RangeError thrown) when they are not.
 */
typedef struct {
  uint8_t *data;
  size_t size;
  const double *list;
  int64_t count;
} triple_args;

static bool read_triple_args(napi_env env, napi_callback_info info, const char *usage, const char *buffer_error, const char *list_error, const char *count_error, triple_args *out) {
  size_t argc = 3;
  napi_value argv[3];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 3) {
    throw_range(env, usage);
    return false;
  }
  void *data;
  if (napi_get_buffer_info(env, argv[0], &data, &out->size) != napi_ok) {
    throw_range(env, buffer_error);
    return false;
  }
  out->data = (uint8_t *)data;
  bool is_typedarray = false;
  napi_is_typedarray(env, argv[1], &is_typedarray);
  napi_typedarray_type kind;
  size_t elements;
  void *list_data;
  napi_value arraybuffer;
  size_t byte_offset;
  if (!is_typedarray || napi_get_typedarray_info(env, argv[1], &kind, &elements, &list_data, &arraybuffer, &byte_offset) != napi_ok || kind != napi_float64_array) {
    throw_range(env, list_error);
    return false;
  }
  if (napi_get_value_int64(env, argv[2], &out->count) != napi_ok || out->count < 0 || (uint64_t)out->count * 3 > elements) {
    throw_range(env, count_error);
    return false;
  }
  out->list = (const double *)list_data;
  return true;
}

/*
 * bodyCrcs(target, list, count): for each of `count` triples (crcAt, bodyAt, bodyLength) of the
 * Float64Array `list`, stores the CRC-32 of target[bodyAt, bodyAt + bodyLength), masked to 31 bits
 * (RocketMQ's UtilAll.crc32), big-endian at target[crcAt]. Every range is checked before any
 * byte is written.
 */
static napi_value body_crcs(napi_env env, napi_callback_info info) {
  triple_args a;
  if (!read_triple_args(env, info, "bodyCrcs(target, list, count)", "bodyCrcs: target must be a Buffer", "bodyCrcs: list must be a Float64Array", "bodyCrcs: count outside the list", &a)) return NULL;
  size_t size = a.size;
  const double *list = a.list;
  int64_t count = a.count;
  for (int64_t i = 0; i < count; i++) {
    double crc_at = list[3 * i], body_at = list[3 * i + 1], length = list[3 * i + 2];
    if (!(crc_at >= 0 && body_at >= 0 && length >= 0) || crc_at + 4 > (double)size || body_at + length > (double)size) return throw_range(env, "bodyCrcs: range outside the target");
  }
  uint8_t *base = a.data;
  for (int64_t i = 0; i < count; i++) {
    uint32_t crc = crc32_ieee(base + (size_t)list[3 * i + 1], (size_t)list[3 * i + 2]) & 0x7fffffffu;
    uint8_t *out = base + (size_t)list[3 * i];
    out[0] = (uint8_t)(crc >> 24);
    out[1] = (uint8_t)(crc >> 16);
    out[2] = (uint8_t)(crc >> 8);
    out[3] = (uint8_t)crc;
  }
  return NULL;
}

/*
 * checkBodyCrcs(source, list, count): for each of `count` triples (bodyAt, bodyLength, stored) of
 * the Float64Array `list`, compares the CRC-32 of source[bodyAt, bodyAt + bodyLength), masked to
 * 31 bits, with `stored`. Returns the index of the first that differs, or -1: the recovery scan
 * checks a run of records in one call instead of one call per record.
 */
static napi_value check_body_crcs(napi_env env, napi_callback_info info) {
  triple_args a;
  if (!read_triple_args(env, info, "checkBodyCrcs(source, list, count)", "checkBodyCrcs: source must be a Buffer", "checkBodyCrcs: list must be a Float64Array", "checkBodyCrcs: count outside the list", &a)) return NULL;
  size_t size = a.size;
  const double *list = a.list;
  int64_t count = a.count;
  const uint8_t *base = a.data;
  int64_t bad = -1;
  for (int64_t i = 0; i < count; i++) {
    double body_at = list[3 * i], length = list[3 * i + 1];
    if (!(body_at >= 0 && length >= 0) || body_at + length > (double)size) return throw_range(env, "checkBodyCrcs: range outside the source");
    uint32_t crc = crc32_ieee(base + (size_t)body_at, (size_t)length) & 0x7fffffffu;
    if ((double)crc != list[3 * i + 2]) {
      bad = i;
      break;
    }
  }
  napi_value result;
  napi_create_int64(env, bad, &result);
  return result;
}

/*
 * seekData(fd, offset, hole): lseek(fd, offset, SEEK_DATA), or SEEK_HOLE when `hole`: where the
 * next region holding data (or the next hole) starts at or after `offset`; -1 when no data
 * follows (ENXIO). Lets recovery skip the holes of a sparse file instead of reading their zeros.
 * Throws an Error whose `code` is the errno name otherwise (EINVAL: not supported here). The
 * descriptor's file position moves; every other read and write of it is positional.
 */
static napi_value seek_data(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < 3) return throw_range(env, "seekData(fd, offset, hole)");
  int32_t fd;
  int64_t offset;
  bool hole;
  if (napi_get_value_int32(env, argv[0], &fd) != napi_ok || napi_get_value_int64(env, argv[1], &offset) != napi_ok || napi_get_value_bool(env, argv[2], &hole) != napi_ok || fd < 0 || offset < 0) {
    return throw_range(env, "seekData: fd and offset must be non-negative numbers, hole a boolean");
  }
#if defined(SEEK_DATA) && defined(SEEK_HOLE)
  off_t at = lseek(fd, (off_t)offset, hole ? SEEK_HOLE : SEEK_DATA);
  int err = at < 0 ? errno : 0;
#else
  off_t at = -1;
  int err = EINVAL;
#endif
  napi_value result;
  if (at >= 0 || err == ENXIO) {
    napi_create_int64(env, at >= 0 ? (int64_t)at : -1, &result);
    return result;
  }
  char text[96];
  snprintf(text, sizeof text, "lseek(%s) failed: %s", hole ? "SEEK_HOLE" : "SEEK_DATA", strerror(err));
  napi_value message, code_value, errno_value, error;
  napi_create_string_utf8(env, text, NAPI_AUTO_LENGTH, &message);
  napi_create_string_utf8(env, errno_code(err), NAPI_AUTO_LENGTH, &code_value);
  napi_create_int32(env, err, &errno_value);
  napi_create_error(env, NULL, message, &error);
  napi_set_named_property(env, error, "code", code_value);
  napi_set_named_property(env, error, "errno", errno_value);
  napi_throw(env, error);
  return NULL;
}

NAPI_MODULE_INIT() {
  crc32_init();
  napi_value fn;
  napi_create_function(env, "populate", NAPI_AUTO_LENGTH, populate, NULL, &fn);
  napi_set_named_property(env, exports, "populate", fn);
  napi_create_function(env, "copy", NAPI_AUTO_LENGTH, copy, NULL, &fn);
  napi_set_named_property(env, exports, "copy", fn);
  napi_create_function(env, "crc32", NAPI_AUTO_LENGTH, crc32, NULL, &fn);
  napi_set_named_property(env, exports, "crc32", fn);
  napi_create_function(env, "bodyCrcs", NAPI_AUTO_LENGTH, body_crcs, NULL, &fn);
  napi_set_named_property(env, exports, "bodyCrcs", fn);
  napi_create_function(env, "checkBodyCrcs", NAPI_AUTO_LENGTH, check_body_crcs, NULL, &fn);
  napi_set_named_property(env, exports, "checkBodyCrcs", fn);
  napi_create_function(env, "seekData", NAPI_AUTO_LENGTH, seek_data, NULL, &fn);
  napi_set_named_property(env, exports, "seekData", fn);
  napi_value accelerated;
  napi_get_boolean(env, crc32_accelerated() != 0, &accelerated);
  napi_set_named_property(env, exports, "crc32Accelerated", accelerated);
  return exports;
}
