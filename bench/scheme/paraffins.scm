;;; paraffins: enumerate the structural isomers of the alkanes C(n)H(2n+2)
;;; as radical trees (a radical is H or a carbon with three sub-radicals
;;; in canonical order), combined around a centroid carbon or bond so each
;;; isomer is built once; every molecule is an actual list structure
;;; (written for fhscheme's suite; the counts are OEIS A000602).
(define (radicals-table n)
  ;; rads[k]: the radicals of k carbons, each (size . structure), canonical:
  ;; sub-radicals in nondecreasing order of their index in the table.
  (let ((rads (make-vector (+ n 1) '())))
    (vector-set! rads 0 (list (vector 0 0 'h)))
    (do ((k 1 (+ k 1))) ((> k n) rads)
      (let ((acc '()) (id 0))
        (do ((a 0 (+ a 1))) ((> (* 3 a) (- k 1)))
          (do ((b a (+ b 1))) ((> (+ a (* 2 b)) (- k 1)))
            (let ((c (- k 1 a b)))
              (for-each-ordered (vector-ref rads a) (vector-ref rads b) (vector-ref rads c) (= a b) (= b c)
                (lambda (x y z) (set! acc (cons (vector k id (list 'c x y z)) acc)) (set! id (+ id 1)))))))
        (vector-set! rads k (reverse acc))))))
;; x from la, y from lb, z from lc with x <= y <= z in table order when sizes are equal
(define (for-each-ordered la lb lc ab bc f)
  (let loop-a ((la la))
    (if (pair? la)
        (begin
          (let loop-b ((l2 (if ab la lb)))
            (if (pair? l2)
                (begin
                  (let loop-c ((l3 (if bc l2 lc)))
                    (if (pair? l3) (begin (f (car la) (car l2) (car l3)) (loop-c (cdr l3)))))
                  (loop-b (cdr l2)))))
          (loop-a (cdr la))))))
(define (count-isomers n rads)
  ;; centroid carbon: four radicals each of size <= (n-1)/2 summing to n-1
  (let ((half (quotient (- n 1) 2)) (count 0))
    (do ((a 0 (+ a 1))) ((> (* 4 a) (- n 1)))
      (do ((b a (+ b 1))) ((> (+ a (* 3 b)) (- n 1)))
        (do ((c b (+ c 1))) ((> (+ a b (* 2 c)) (- n 1)))
          (let ((d (- n 1 a b c)))
            (if (<= d half)
                (for-each4 (vector-ref rads a) (vector-ref rads b) (vector-ref rads c) (vector-ref rads d)
                           (= a b) (= b c) (= c d)
                           (lambda (w x y z) (set! count (+ count 1)) (list 'c w x y z))))))))
    ;; centroid bond (n even): two radicals of n/2 carbons, unordered
    (if (even? n)
        (let loop ((l (vector-ref rads (quotient n 2))))
          (if (pair? l)
              (begin (let inner ((m l)) (if (pair? m) (begin (cons (car l) (car m)) (set! count (+ count 1)) (inner (cdr m)))))
                     (loop (cdr l))))))
    count))
(define (for-each4 la lb lc ld ab bc cd f)
  (let loop-a ((la la))
    (if (pair? la)
        (begin
          (let loop-b ((l2 (if ab la lb)))
            (if (pair? l2)
                (begin
                  (let loop-c ((l3 (if bc l2 lc)))
                    (if (pair? l3)
                        (begin
                          (let loop-d ((l4 (if cd l3 ld)))
                            (if (pair? l4) (begin (f (car la) (car l2) (car l3) (car l4)) (loop-d (cdr l4)))))
                          (loop-c (cdr l3)))))
                  (loop-b (cdr l2)))))
          (loop-a (cdr la))))))
(define (run n reps)
  (let loop ((i 0) (r #f))
    (if (= i reps) r
        (let ((rads (radicals-table (quotient n 2))))
          (loop (+ i 1) (map (lambda (k) (count-isomers k rads)) (list 8 12 16 n)))))))
(display (run 19 6))
(newline)
