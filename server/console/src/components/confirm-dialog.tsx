/**
 * Asks before an admin action: a modal that says exactly what will change, with Cancel focused
 * first so that Enter does not destroy anything by accident.
 */
import type { ComponentChildren } from "preact";
import { useEffect, useRef } from "preact/hooks";

export interface ConfirmDialogProps {
  readonly title: string;
  readonly children: ComponentChildren;
  /** The button's words, e.g. "Delete 3 errors". */
  readonly confirmLabel: string;
  onConfirm(): void;
  onCancel(): void;
}

export function ConfirmDialog({ title, children, confirmLabel, onConfirm, onCancel }: ConfirmDialogProps) {
  const dialog = useRef<HTMLDialogElement>(null);
  useEffect(() => {
    const d = dialog.current;
    if (d !== null && !d.open) d.showModal();
  }, []);
  return (
    <dialog
      ref={dialog}
      class="confirm"
      aria-label={title}
      onCancel={(e) => {
        e.preventDefault();
        onCancel();
      }}
    >
      <h3>{title}</h3>
      <div class="confirm-body">{children}</div>
      <div class="confirm-buttons">
        <button type="button" autofocus onClick={onCancel}>
          Cancel
        </button>
        <button type="button" class="danger" onClick={onConfirm}>
          {confirmLabel}
        </button>
      </div>
    </dialog>
  );
}
