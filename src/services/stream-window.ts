// Flow control of containerd's streaming API (containerd.services.streaming.v1), as plain
// bookkeeping. The receiver of a byte stream grants the sender credits (WindowUpdate, in bytes);
// the sender never has more bytes in flight than it was granted. containerd receives stdout and
// stderr that way (it grants 64 KiB whenever less than that is outstanding) and sends stdin in
// Data messages of at most 32 KiB within the credits the daemon grants.

/** containerd's own window and largest Data message (core/transfer/streaming). */
export const STREAM_WINDOW = 64 * 1024;
export const MAX_DATA_MESSAGE = 32 * 1024;

/** The sender's side: credits granted by the peer and not used yet. */
export class SendWindow {
  private credits = 0;

  /** Adds the peer's grant; a grant that is not a positive integer is ignored (and reported false). */
  grant(bytes: number): boolean {
    if (!Number.isInteger(bytes) || bytes <= 0) return false;
    this.credits += bytes;
    return true;
  }

  /** How many of `wanted` bytes may go in the next message (at most `maxMessage`); they are used up. */
  take(wanted: number, maxMessage = MAX_DATA_MESSAGE): number {
    const bytes = Math.max(0, Math.min(wanted, maxMessage, this.credits));
    this.credits -= bytes;
    return bytes;
  }
}

/** The receiver's side: how much the peer may still send, and when to grant it more. */
export class ReceiveWindow {
  /** Granted and not received yet. */
  private outstanding = 0;

  constructor(private readonly size = STREAM_WINDOW) {}

  /** Counts bytes that arrived; false when the peer sent more than it had been granted. */
  received(bytes: number): boolean {
    const withinWindow = bytes <= this.outstanding;
    this.outstanding = Math.max(0, this.outstanding - bytes);
    return withinWindow;
  }

  /**
   * The grant to send now, or 0: once at most half of the window is outstanding, the peer is
   * granted enough to have a whole window in flight again. The grant counts as sent.
   */
  due(): number {
    if (this.outstanding > this.size / 2) return 0;
    const grant = this.size - this.outstanding;
    this.outstanding = this.size;
    return grant;
  }
}
