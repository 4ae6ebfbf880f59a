"""Local validation of a model on the site's own labelled cases (``inference.evaluate`` computes; this
package draws the PDF and, in the app, runs it on a worker)."""
