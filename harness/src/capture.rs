//! Reading pcap/pcapng captures and reassembling TCP streams (being written).
