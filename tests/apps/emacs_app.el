;; An emacs app for runtimes_test: start-up work (org loaded, a table of md5s), a repeating timer,
;; then one line read from stdin (batch mode) and one answer.
(require 'org)
(require 'cl-lib)
(defvar tbl nil)
(setq tbl (make-hash-table))
(dotimes (i 20000) (puthash i (md5 (number-to-string i)) tbl))
(run-with-timer 0.01 0.01 (lambda () nil))
(princ (format "ready pid=%d\n" (emacs-pid)))
(let ((n (string-to-number (read-from-minibuffer ""))))
  (princ (format "answer=%s org=%s\n" (substring (gethash n tbl) 0 4) (featurep 'org))))
