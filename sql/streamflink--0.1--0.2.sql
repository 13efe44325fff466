/* streamflink 0.1 -> 0.2: the runtime seams (checkpoint coordinator with
 * participants, sink interface, one key space and timer service).
 *
 * streamflink--0.1.sql is the released 0.1 and stays as it was: a fresh
 * CREATE EXTENSION runs it and then this script, and ALTER EXTENSION
 * streamflink UPDATE brings a 0.1 installation to the same catalog.  Every
 * catalog change of 0.2 goes here, never into the 0.1 script.
 */
\echo Use "ALTER EXTENSION streamflink UPDATE TO '0.2'" to load this file. \quit
