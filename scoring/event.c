/*
 * event.c — symbol names of the event's enums, in schema order.
 */
#include "scoring/event.h"

const char *const event_kind_names[EVENT_KIND_COUNT] = {
    "CONTACT", "FEEDBACK", "PURCHASE", "CANCELLATION"};
const char *const event_channel_names[EVENT_CHANNEL_COUNT] = {
    "CHAT", "VOICE", "EMAIL", "SOCIAL", "IN_PERSON", "APP", "OTHER"};
const char *const event_handler_names[EVENT_HANDLER_COUNT] = {
    "AI", "HUMAN", "HYBRID", "NONE"};
