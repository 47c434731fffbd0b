;;; destruct: destructive list code: lists built, spliced with set-cdr!,
;;; reversed in place, cut and re-joined, over a vector of long lists
;;; (written for fhscheme's suite).
(define (make-list* n f) (let loop ((i 0) (acc '())) (if (= i n) acc (loop (+ i 1) (cons (f i) acc)))))
(define (reverse!* l) (let loop ((l l) (prev '())) (if (null? l) prev (let ((next (cdr l))) (set-cdr! l prev) (loop next l)))))
(define (append!* a b) (if (null? a) b (begin (set-cdr! (last-pair a) b) a)))
(define (take! l n) (if (= n 0) '() (let ((cell (list-tail l (- n 1)))) (let ((rest (cdr cell))) (set-cdr! cell '()) rest))))
(define (sum l) (let loop ((l l) (s 0)) (if (null? l) s (loop (cdr l) (+ s (car l))))))
(define (run rounds nlists len)
  (let ((v (make-vector nlists '())))
    (do ((i 0 (+ i 1))) ((= i nlists)) (vector-set! v i (make-list* len (lambda (k) (+ k i)))))
    (do ((r 0 (+ r 1))) ((= r rounds))
      (do ((i 0 (+ i 1))) ((= i nlists))
        (let* ((j (modulo (+ (* i 7) r) nlists))
               (a (vector-ref v i))
               (rest (take! a (quotient len 2))))
          ;; a keeps its first half; the second half goes reversed to j's
          (vector-set! v i (append!* (reverse!* a) (make-list* (quotient len 2) (lambda (k) (* k r)))))
          (vector-set! v j (append!* (reverse!* rest) (take-half (vector-ref v j) len))))))
    (let loop ((i 0) (s 0)) (if (= i nlists) (list s (length (vector-ref v 0))) (loop (+ i 1) (+ s (sum (vector-ref v i))))))))
(define (take-half l len) (take! l (- (length l) (quotient len 2))) l)
(display (run 60 200 400))
(newline)
