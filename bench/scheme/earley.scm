;;; earley: an Earley chart parser for an ambiguous grammar (S -> S S | a,
;;; plus expression rules), recognizing two inputs and counting the chart's items;
;;; items are vectors, the chart a vector of item lists with a duplicate
;;; check per set (written for fhscheme's suite).
(define grammar
  '((s (s s) (a))
    (e (e plus t) (t))
    (t (t times f) (f))
    (f (lp e rp) (n))))
(define (rules-for nt) (cdr (assq nt grammar)))
(define (nonterminal? x) (assq x grammar))
;; item: #(lhs rhs dot origin)
(define (item lhs rhs dot origin) (vector lhs rhs dot origin))
(define (item-next it) (let ((rest (list-tail (vector-ref it 1) (vector-ref it 2)))) (if (null? rest) #f (car rest))))
(define (item-equal? a b)
  (and (eq? (vector-ref a 0) (vector-ref b 0)) (eq? (vector-ref a 1) (vector-ref b 1))
       (= (vector-ref a 2) (vector-ref b 2)) (= (vector-ref a 3) (vector-ref b 3))))
(define (parse start tokens)
  (let* ((n (length tokens)) (chart (make-vector (+ n 1) '())) (toks (list->vector tokens)))
    (define (add! k it)
      (let ((set (vector-ref chart k)))
        (if (not (let loop ((s set)) (and (pair? s) (or (item-equal? (car s) it) (loop (cdr s))))))
            (if (null? set) (vector-set! chart k (list it)) (set-cdr! (last-pair set) (list it))))))
    (for-each (lambda (rhs) (add! 0 (item start rhs 0 0))) (rules-for start))
    (do ((k 0 (+ k 1))) ((> k n))
      (let loop ((items (vector-ref chart k)))
        (if (pair? items)
            (let* ((it (car items)) (next (item-next it)))
              (cond ((not next) ; complete
                     (for-each (lambda (p)
                                 (if (eq? (item-next p) (vector-ref it 0))
                                     (add! k (item (vector-ref p 0) (vector-ref p 1) (+ 1 (vector-ref p 2)) (vector-ref p 3)))))
                               (vector-ref chart (vector-ref it 3))))
                    ((nonterminal? next) ; predict
                     (for-each (lambda (rhs) (add! k (item next rhs 0 k))) (rules-for next)))
                    ((and (< k n) (eq? next (vector-ref toks k))) ; scan
                     (add! (+ k 1) (item (vector-ref it 0) (vector-ref it 1) (+ 1 (vector-ref it 2)) (vector-ref it 3)))))
              (loop (cdr items))))))
    ;; count complete start items spanning the input
    (let loop ((s (vector-ref chart n)) (c 0))
      (if (null? s) (list c (apply + (map length (vector->list chart))))
          (loop (cdr s) (if (and (eq? (vector-ref (car s) 0) start) (not (item-next (car s))) (= 0 (vector-ref (car s) 3))) (+ c 1) c))))))
(define (repeat n x) (if (= n 0) '() (cons x (repeat (- n 1) x))))
(define (run reps)
  (let loop ((i 0) (acc '()))
    (if (= i reps) acc
        (loop (+ i 1)
              (list (parse 's (repeat 18 'a))
                    (parse 'e '(n plus n times lp n plus n rp times n plus n times n plus lp n rp)))))))
(display (run 100))
(newline)
