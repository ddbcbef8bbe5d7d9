/**
 * Protobuf strings decoded exactly. protobuf-es decodes UTF-8 with a default
 * TextDecoder, which drops a leading U+FEFF as a byte-order mark, so a key
 * value "\uFEFFa" arrived as "a" and became the same job as the key "a"
 * (found by test/fuzz.test.ts). A string field has no byte-order mark: every
 * code point is content. Installed by main.ts before any message is decoded.
 */
import { configureTextEncoding } from "@bufbuild/protobuf/wire";

export function preserveByteOrderMarks(): void {
  const encoder = new TextEncoder();
  const lenient = new TextDecoder("utf-8", { ignoreBOM: true });
  const strict = new TextDecoder("utf-8", { ignoreBOM: true, fatal: true });
  configureTextEncoding({
    encodeUtf8: (text) => encoder.encode(text),
    decodeUtf8: (bytes, isStrict) => (isStrict === true ? strict : lenient).decode(bytes),
    // protobuf-es's own check: encodeURIComponent throws on a lone surrogate, which UTF-8 cannot encode.
    checkUtf8: (text) => {
      try {
        encodeURIComponent(text);
        return true;
      } catch {
        return false;
      }
    },
  });
}
