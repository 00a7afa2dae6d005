/*
 * version.h — the one place the version is written.
 */
#ifndef RAPPORT_VERSION_H
#define RAPPORT_VERSION_H

#define RAPPORT_VERSION "0.1.0"

#endif
