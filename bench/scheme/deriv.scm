;;; deriv: symbolic differentiation of sums, products, quotients, powers
;;; and exponentials, with a simplifier (written for fhscheme's suite).
(define (d e x)
  (cond ((number? e) 0)
        ((symbol? e) (if (eq? e x) 1 0))
        (else
         (let ((op (car e)) (args (cdr e)))
           (case op
             ((+) (cons '+ (map (lambda (a) (d a x)) args)))
             ((-) (cons '- (map (lambda (a) (d a x)) args)))
             ((*) (list '* e (cons '+ (map (lambda (a) (list '/ (d a x) a)) args))))
             ((/) (list '- (list '/ (d (car args) x) (cadr args))
                        (list '/ (car args) (list '* (cadr args) (cadr args) (d (cadr args) x)))))
             ((expt) (list '* (cadr args) (list 'expt (car args) (- (cadr args) 1)) (d (car args) x)))
             ((exp) (list '* e (d (car args) x)))
             (else (error "deriv: unknown operator" op)))))))
(define (simplify e)
  (if (not (pair? e)) e
      (let ((op (car e)) (args (map simplify (cdr e))))
        (case op
          ((+) (let ((args (filter-out-zero args)))
                 (cond ((null? args) 0) ((null? (cdr args)) (car args)) (else (cons '+ args)))))
          ((*) (cond ((memv 0 args) 0)
                     (else (let ((args (remove-ones args)))
                             (cond ((null? args) 1) ((null? (cdr args)) (car args)) (else (cons '* args)))))))
          (else (cons op args))))))
(define (filter-out-zero l) (cond ((null? l) '()) ((eqv? (car l) 0) (filter-out-zero (cdr l))) (else (cons (car l) (filter-out-zero (cdr l))))))
(define (remove-ones l) (cond ((null? l) '()) ((eqv? (car l) 1) (remove-ones (cdr l))) (else (cons (car l) (remove-ones (cdr l))))))
(define (size e) (if (pair? e) (apply + 1 (map size (cdr e))) 1))
(define expr '(+ (* 3 x x) (* a x x) (* b x) (exp (* 2 x)) (/ (expt x 3) (+ x 1)) 5))
(define (run n)
  (let loop ((i 0) (total 0))
    (if (= i n) total
        (loop (+ i 1) (+ total (size (simplify (d (d expr 'x) 'x))))))))
(display (run 2000))
(newline)
